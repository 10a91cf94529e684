// Run standalone bilstm models (bilstm export --with-tokenizer) in the browser with
// onnxruntime-web's WebAssembly backend. The graph tokenizes, looks up the vocabulary and names
// the labels itself, so a page needs no tokenizer of its own: text in, labels out.
//
//   import { initRuntime, loadModel } from "./bilstm-web.js";
//   initRuntime({ threads: 4 });                       // once, before the first model
//   const sentiment = await loadModel("models/sentiment-standalone.onnx");
//   const [r] = await sentiment.classify(["A gorgeous, witty movie."]);
//   // r = { label: "positive", probabilities: { negative: 0.02, positive: 0.98 }, numTokens: 5 }
import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";

const DIST = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url).href;

/** Threads the page may use: all cores when cross-origin isolated (SharedArrayBuffer), else 1. */
export function availableThreads() {
  return globalThis.crossOriginIsolated ? navigator.hardwareConcurrency || 1 : 1;
}

/**
 * Set up the wasm backend; call once before loading a model (onnxruntime-web reads these
 * settings when it starts). `threads` above availableThreads() is refused, not silently lowered.
 */
export function initRuntime({ threads = availableThreads() } = {}) {
  if (!Number.isInteger(threads) || threads < 1) {
    throw new Error(`threads must be an integer >= 1, got ${threads}`);
  }
  if (threads > availableThreads()) {
    throw new Error(
      `threads=${threads} needs a cross-origin isolated page (serve it with serve.py); ` +
        `this page can use ${availableThreads()}`,
    );
  }
  ort.env.wasm.wasmPaths = DIST; // the .wasm files come from node_modules, not a CDN
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  return { backend: "wasm", threads, version: ort.env.versions.web };
}

function rows(tensor, width) {
  const out = [];
  for (let i = 0; i < tensor.length; i += width) out.push(tensor.slice(i, i + width));
  return out;
}

/** A loaded standalone model: `classify` or `tag` depending on its outputs. */
export class StandaloneModel {
  constructor(session, url, bytes) {
    this.session = session;
    this.url = url;
    this.bytes = bytes;
    this.task = session.outputNames.includes("tags") ? "tag" : "classify";
    this.lastMs = 0;
  }

  async run(texts) {
    const feeds = { text: new ort.Tensor("string", texts, [texts.length]) };
    const start = performance.now();
    const out = await this.session.run(feeds);
    this.lastMs = performance.now() - start;
    return out;
  }

  /** One `{label, probabilities, numTokens}` per text (label null: the text has no tokens). */
  async classify(texts) {
    const out = await this.run(texts);
    const classes = out.classes.data;
    const probs = rows(out.probabilities.data, classes.length);
    return texts.map((_, i) => {
      const numTokens = Number(out.num_tokens.data[i]);
      const probabilities = {};
      classes.forEach((name, j) => (probabilities[name] = probs[i][j]));
      return {
        label: numTokens > 0 ? out.label.data[i] : null,
        probabilities: numTokens > 0 ? probabilities : null,
        numTokens,
      };
    });
  }

  /** One `{tokens, tags, confidences}` per text. */
  async tag(texts) {
    const out = await this.run(texts);
    const time = out.tokens.dims[1];
    const tokens = rows(out.tokens.data, time);
    const tags = rows(out.tags.data, time);
    const conf = rows(out.confidences.data, time);
    return texts.map((_, i) => {
      const n = Number(out.num_tokens.data[i]);
      return {
        tokens: tokens[i].slice(0, n),
        tags: tags[i].slice(0, n),
        confidences: Array.from(conf[i].slice(0, n)),
      };
    });
  }

  predict(texts) {
    return this.task === "tag" ? this.tag(texts) : this.classify(texts);
  }
}

/** Download `url` and open it on the wasm backend. */
export async function loadModel(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status}; run make_models.py or check the path`);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  if (!session.inputNames.includes("text")) {
    throw new Error(`${url}: not a standalone model (no 'text' input); export it --with-tokenizer`);
  }
  return new StandaloneModel(session, url, bytes.length);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Time `model` on one text (`texts[0]`) and on `texts` as one batch: median milliseconds of
 * `repeats` runs each, after 3 warm-up runs.
 */
export async function timeModel(model, texts, repeats = 20) {
  const one = [texts[0]];
  const result = {};
  for (const [name, batch] of [
    ["one", one],
    ["batch", texts],
  ]) {
    for (let i = 0; i < 3; i++) await model.run(batch);
    const times = [];
    for (let i = 0; i < repeats; i++) {
      await model.run(batch);
      times.push(model.lastMs);
    }
    result[name] = { texts: batch.length, median_ms: median(times), min_ms: Math.min(...times), runs: repeats };
  }
  return result;
}
