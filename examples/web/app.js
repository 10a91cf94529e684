// The page: score each line of the text box as the user types, with both models.
// `window.bilstmPage` exposes the same scoring and timing to scripts (tests, benchmarks).
import { availableThreads, initRuntime, loadModel, timeModel } from "./bilstm-web.js";

const MODELS = {
  sentiment: "models/sentiment-standalone.onnx",
  pos: "models/pos-en-standalone.onnx",
};
// One colour per UPOS tag (the pos-en model's 17 tags).
const TAG_COLOURS = {
  ADJ: "#f6c6a8", ADP: "#d7e3fc", ADV: "#fde2a4", AUX: "#c9e4de", CCONJ: "#e2d4f0",
  DET: "#dbe7c9", INTJ: "#ffd6e0", NOUN: "#bfe0f7", NUM: "#f0e1c6", PART: "#e8e8e8",
  PRON: "#cde7b0", PROPN: "#a9d3f5", PUNCT: "#eeeeee", SCONJ: "#e5d0e8", SYM: "#f5f0c8",
  VERB: "#f7b9b9", X: "#dddddd",
};

const $ = (id) => document.getElementById(id);
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

function requestedThreads() {
  const value = new URLSearchParams(location.search).get("threads");
  return value === null ? availableThreads() : Number(value);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
}

function showSentiment(lines, results) {
  $("sentiment").replaceChildren(
    ...results.map((r, i) => {
      const item = el("li", {
        "data-line": String(i + 1),
        "data-label": r.label ?? "",
        "data-probabilities": JSON.stringify(r.probabilities),
      });
      item.append(el("div", {}, el("span", { className: "label" }, r.label ?? "(no tokens)"), " ", lines[i]));
      for (const [name, p] of Object.entries(r.probabilities ?? {})) {
        const bar = el("div", { className: "bar" }, el("span", { className: "name" }, name));
        if (name === r.label) bar.setAttribute("data-best", "");
        bar.append(el("div", { style: `width:${(p * 20).toFixed(2)}rem` }), `${(p * 100).toFixed(1)}%`);
        item.append(bar);
      }
      return item;
    }),
  );
}

function showTags(results) {
  $("pos").replaceChildren(
    ...results.map((r, i) =>
      el(
        "li",
        { "data-line": String(i + 1), "data-tokens": JSON.stringify(r.tokens), "data-tags": JSON.stringify(r.tags) },
        ...r.tokens.map((tok, j) => {
          const span = el("span", { className: "tok", title: `${r.tags[j]} ${(r.confidences[j] * 100).toFixed(1)}%` });
          span.style.background = TAG_COLOURS[r.tags[j]] ?? "#ddd";
          span.append(tok, el("small", {}, r.tags[j]));
          return span;
        }),
      ),
    ),
  );
}

async function main() {
  const runtime = initRuntime({ threads: requestedThreads() });
  const started = performance.now();
  const [sentiment, pos] = await Promise.all([loadModel(MODELS.sentiment), loadModel(MODELS.pos)]);
  const loadMs = performance.now() - started;
  const wasmBytes = performance
    .getEntriesByType("resource")
    .filter((e) => e.name.endsWith(".wasm"))
    .reduce((sum, e) => sum + (e.encodedBodySize || 0), 0);
  const isolated = globalThis.crossOriginIsolated ? "cross-origin isolated" : "not isolated: 1 thread only";
  $("status").textContent =
    `Backend: ${runtime.backend}, ${runtime.threads} thread${runtime.threads > 1 ? "s" : ""} ` +
    `(${isolated}), onnxruntime-web ${runtime.version}. Download: sentiment ${mb(sentiment.bytes)} + ` +
    `pos-en ${mb(pos.bytes)} + runtime ${mb(wasmBytes)}; loaded in ${loadMs.toFixed(0)} ms.`;
  $("status").dataset.backend = runtime.backend;
  $("status").dataset.threads = String(runtime.threads);

  const input = $("input");
  let running = false;
  let pending = false;
  async function score() {
    if (running) {
      pending = true; // the newest text is scored when this run ends
      return;
    }
    running = true;
    document.body.dataset.state = "busy";
    try {
      do {
        pending = false;
        const text = input.value;
        const lines = text.split("\n").filter((line) => line.trim() !== "");
        if (lines.length) {
          const [s, t] = [await sentiment.classify(lines), await pos.tag(lines)];
          showSentiment(lines, s);
          showTags(t);
        } else {
          $("sentiment").replaceChildren();
          $("pos").replaceChildren();
        }
        $("timing").textContent = lines.length
          ? `Last inference (${lines.length} line${lines.length > 1 ? "s" : ""}): sentiment ` +
            `${sentiment.lastMs.toFixed(1)} ms, parts of speech ${pos.lastMs.toFixed(1)} ms`
          : "";
        document.body.dataset.scored = text;
      } while (pending);
    } finally {
      running = false;
      document.body.dataset.state = "ready";
    }
  }
  input.addEventListener("input", () => score().catch(fail));

  async function benchmark(texts, repeats = 20) {
    const batch = Array.from({ length: 100 }, (_, i) => texts[i % texts.length]);
    return {
      backend: runtime.backend,
      threads: runtime.threads,
      crossOriginIsolated: globalThis.crossOriginIsolated,
      userAgent: navigator.userAgent,
      onnxruntimeWeb: runtime.version,
      sentiment: await timeModel(sentiment, batch, repeats),
      pos: await timeModel(pos, batch, repeats),
    };
  }
  $("bench").addEventListener("click", async () => {
    $("bench").disabled = true;
    try {
      const lines = input.value.split("\n").filter((line) => line.trim() !== "");
      const r = await benchmark(lines.length ? lines : ["A gorgeous, witty movie ."]);
      $("bench-table").tBodies[0].replaceChildren(
        ...["sentiment", "pos"].map((name) =>
          el(
            "tr",
            {},
            el("td", {}, name),
            el("td", {}, r[name].one.median_ms.toFixed(2)),
            el("td", {}, r[name].batch.median_ms.toFixed(1)),
            el("td", {}, (100000 / r[name].batch.median_ms).toFixed(0)),
          ),
        ),
      );
      $("bench-table").hidden = false;
    } finally {
      $("bench").disabled = false;
    }
  });

  window.bilstmPage = { runtime, sentiment, pos, benchmark, score };
  input.disabled = false;
  $("bench").disabled = false;
  await score();
}

function fail(err) {
  $("error").textContent = `Error: ${err.message}`;
  document.body.dataset.state = "error";
  console.error(err);
}

main().catch(fail);
