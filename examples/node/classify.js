// Classify raw text with a standalone bilstm model from Node.js: no tokenizer, vocabulary or
// label table of our own. The model (`bilstm export CHECKPOINT OUT.onnx --with-tokenizer`)
// takes a string tensor `text[batch]` and returns `label[batch]`, `probabilities[batch, classes]`
// (columns named by `classes[classes]`) and `num_tokens[batch]`.
//
//   node classify.js                               # the bundled sentiment model, sample texts
//   node classify.js MODEL.onnx "text one" "text two"
//
// Prints one JSON object per text. A text without tokens gets label null.
"use strict";

const path = require("path");
const ort = require("onnxruntime-node");

const SAMPLES = [
  "A gorgeous, witty, seductive movie.",
  "Dull, lifeless and far too long.",
  "It's not the best film of the year, but I loved every minute of it!",
  "",
];

async function classify(session, texts) {
  const feeds = { text: new ort.Tensor("string", texts, [texts.length]) };
  const out = await session.run(feeds);
  const classes = out.classes.data; // label of each probability column
  const probs = out.probabilities.data; // Float32Array, row-major [batch, classes]
  return texts.map((text, i) => {
    const tokens = Number(out.num_tokens.data[i]); // int64 -> BigInt
    const probabilities = {};
    classes.forEach((name, j) => {
      probabilities[name] = probs[i * classes.length + j];
    });
    return {
      text,
      label: tokens > 0 ? out.label.data[i] : null,
      probabilities: tokens > 0 ? probabilities : null,
      num_tokens: tokens,
    };
  });
}

async function main() {
  const args = process.argv.slice(2);
  const model = args.length && args[0].endsWith(".onnx")
    ? args.shift()
    : path.join(__dirname, "sentiment-standalone.onnx");
  const texts = args.length ? args : SAMPLES;
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  for (const result of await classify(session, texts)) {
    console.log(JSON.stringify(result));
  }
}

main().catch((err) => {
  console.error(`error: ${err.message}`);
  process.exit(2);
});
