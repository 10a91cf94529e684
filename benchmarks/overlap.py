"""Overlap: does preparing the next chunk while ONNX Runtime scores this one pay here?

`bilstm-run` reads, tokenises and pads a chunk, then scores it. The alternative is a
producer thread that prepares chunk N+1 (tokenise, encode, sort by length, pad) while the
main thread runs chunk N (ONNX Runtime releases the GIL during `run`), with a bounded queue of
two chunks. Both sides do the same work on the same texts; items/s at each thread count,
interleaved.

    python -m benchmarks.overlap --threads 2
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Sequence
from typing import Any

from benchmarks import _common as c

NAME = "overlap"
CHUNK = 2048


def main(argv: Sequence[str] | None = None) -> int:
    p = c.parser(NAME, __doc__.splitlines()[0])
    c.add_asset_options(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=10, help="times the data is repeated")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    if args.smoke:
        args.repeat, args.rounds = 1, 1
    machine = c.machine_info(args.wait_quiet)
    assets = c.resolve_assets(args)

    from bilstm.core.batching import length_batches
    from bilstm.runtime import BiLSTM

    texts = [t for _, t in c.read_tsv(assets.data)] * args.repeat
    chunks = [texts[s : s + CHUNK] for s in range(0, len(texts), CHUNK)]

    def prepare(model: BiLSTM, chunk: list[str]) -> list[tuple[int, dict[str, Any]]]:
        tokens = model.tokens(chunk)
        encoder = model.encoder
        keep = [i for i, t in enumerate(tokens) if t]
        plan = length_batches([len(tokens[i]) for i in keep], args.batch_size)
        return [(len(b), encoder.batch([tokens[keep[i]] for i in b])) for b in plan]

    def serial(model: BiLSTM) -> int:
        done = 0
        for chunk in chunks:
            for rows, feeds in prepare(model, chunk):
                model.run(feeds, ["probabilities"])
                done += rows
        return done

    def overlapped(model: BiLSTM) -> int:
        ready: queue.Queue[list[tuple[int, dict[str, Any]]] | None] = queue.Queue(maxsize=2)

        failed: list[BaseException] = []

        def produce() -> None:
            try:
                for chunk in chunks:
                    ready.put(prepare(model, chunk))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised
                failed.append(exc)
            finally:
                ready.put(None)  # the consumer never waits for ever

        worker = threading.Thread(target=produce)
        worker.start()
        done = 0
        while (batches := ready.get()) is not None:
            for rows, feeds in batches:
                model.run(feeds, ["probabilities"])
                done += rows
        worker.join()
        if failed:
            raise failed[0]
        return done

    result: dict[str, Any] = {"texts": len(texts), "chunk": CHUNK, "by_threads": {}}
    for threads in sorted({1, args.threads}):
        model = BiLSTM.load(assets.model, device="cpu", threads=threads)
        counts: dict[str, int] = {}
        cases = {
            name: lambda fn=fn, name=name, m=model, counts=counts: counts.update({name: fn(m)})
            for name, fn in (("serial", serial), ("overlapped", overlapped))
        }
        for fn in cases.values():
            fn()
        times = c.interleave(cases, args.rounds)
        assert counts["serial"] == counts["overlapped"]
        rates = {k: counts[k] / c.median(v) for k, v in times.items()}
        result["by_threads"][str(threads)] = {
            "items_per_s": rates,
            "speedup": c.ratio(rates["overlapped"], rates["serial"]),
        }
        print(f"threads={threads}: {rates}", file=sys.stderr)
    c.save(NAME, args, argv, result, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
