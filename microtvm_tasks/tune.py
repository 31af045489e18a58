"""Tuning on the device: measure every kernel variant of every operator, keep the fastest.

The AutoTVM idea on our own kernels. Each operator instance may have several kernel
variants (OpSpec.variants) that compute the same bits; which is fastest depends on the
CPU and the instance's shapes, so it is measured where it runs, through the Project API:

1. The model is loaded and the operators with more than one variant listed, each with
   its signature (compiler/variants.py). Records already in the log for this target and
   compiler version are not measured again: a rerun of an unchanged model measures nothing,
   and an interrupted run resumes where it stopped (the log is rewritten atomically after
   every batch).
2. Batch v gives every such operator its v-th variant (its default where it has fewer) and
   is compiled as a profiling build (each operator timed with the platform's tick counter),
   generated from the project's template with the project's options, built, flashed and run
   once over the run protocol; the PROFILE command returns the ticks of each operator. On
   qemu_arm the ticks are QEMU's exact instruction counts, so a measurement is repeatable.
3. Every batch must produce the same outputs as the first (all variants are exact): a batch
   that differs is a kernel bug, reported with the variants it used, never a tuning result.

`compile` then reads the log (compile_model(tuning_log=...)) and picks, per instance, the
variant with the fewest ticks.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MicrotvmError


class TuneError(MicrotvmError):
    """Tuning could not measure (a build or run failed, or variants disagree)."""


@dataclass
class TuneResult:
    log: Path
    target: str
    batches: int = 0  # firmwares built and run
    measured: int = 0  # records added to the log
    pending_before: int = 0  # (signature, variant) pairs that needed measuring
    rows: list[dict[str, Any]] = field(default_factory=list)  # per tunable operator

    def table(self) -> str:
        """One line per tunable operator: its variants' ticks, the fastest marked."""
        lines = [f"target {self.target}: {len(self.rows)} tunable operator(s), {self.batches} batch(es) run, "
                 f"{self.measured} measurement(s) added to {self.log}"]
        for r in self.rows:
            ticks = r["ticks"]
            parts = []
            for v in r["variants"]:
                t = ticks.get(v)
                mark = "*" if v == r["best"] else ""
                parts.append(f"{v}{mark}={t if t is not None else '?'}")
            lines.append(f"  #{r['node']} {r['kind']} {r['name'][:40]}: {'  '.join(parts)}")
        return "\n".join(lines)


def _profile_ops(mlf: Path) -> list[dict[str, Any]]:
    with tarfile.open(mlf) as tar:
        for m in tar.getmembers():
            if m.name.lstrip("./").startswith("src/") and m.name.endswith(".profile.json"):
                f = tar.extractfile(m)
                if f is not None:
                    return list(json.loads(f.read().decode("utf-8"))["operators"])
    raise TuneError(f"{mlf}: no src/<name>.profile.json; not a profiling build")


def _write_log(path: Path, records: list[Any]) -> None:
    from .fsutil import atomic_write_text

    lines = [json.dumps({"signature": r.signature, "target": r.target, "compiler": r.compiler,
                         "variant": r.variant, "ticks": r.ticks}, sort_keys=True) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def tune_model(
    model: str | Path,
    template_dir: str | Path,
    options: Mapping[str, Any],
    log: str | Path,
    *,
    work_dir: str | Path,
    target: str | None = None,
    module_name: str = "default",
    compile_options: Mapping[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = 60.0,
    say: Callable[[str], None] = print,
) -> TuneResult:
    """Measure the variants the log lacks for `model` on the project described by
    `template_dir` + `options`; returns what was measured and the best per operator."""
    from .compiler import compile_model, load_model
    from .compiler.passes import run_passes
    from .compiler.variants import Record, best_variants, compiler_version, read_log, signature, tunable_nodes
    from .project import build_project, create_project, flash_project
    from .session import run_project
    from .targets import Target
    from .template_support.boards import project_target

    log = Path(log)
    tgt = Target.parse(target or project_target(template_dir, options))
    version = compiler_version()
    copts = dict(compile_options or {})
    graph = run_passes(load_model(model, **copts))
    tunable = tunable_nodes(graph, tgt)
    records = read_log(log)
    have = {(r.signature, r.variant) for r in records if r.target == tgt.name and r.compiler == version}
    sigs = {i: signature(node, graph) for i, node, _ in tunable}
    pending = {(sigs[i], v) for i, _, names in tunable for v in names if (sigs[i], v) not in have}
    result = TuneResult(log=log, target=tgt.name, pending_before=len(pending))
    width = max((len(names) for _, _, names in tunable), default=0)
    work = Path(work_dir)
    reference: list[Any] | None = None
    for v in range(width):
        wanted = {sigs[i] for i, _, names in tunable if v < len(names) and (sigs[i], names[v]) in pending}
        if not wanted:
            continue
        choice = {node.name: names[v] if v < len(names) else names[0] for _, node, names in tunable}
        say(f"tune: batch {v + 1}/{width}: {len(wanted)} operator(s) to measure on {tgt.name}")
        batch = work / f"batch{v}"
        mlf = work / f"batch{v}.tar"
        work.mkdir(parents=True, exist_ok=True)

        def choose(node: Any, names: tuple[str, ...], choice: dict[str, str] = choice) -> str:
            want = choice.get(node.name)
            return want if want in names else names[0]

        compile_model(model, mlf, module_name=module_name, target=tgt, choose=choose, profile=True, **copts)
        create_project(batch, mlf, template_dir, options, force=True, cache_dir=cache_dir,
                       where=f"tuning batch {v}")
        build_project(batch)
        flash_project(batch)
        res = run_project(batch, seed=0, timeout=timeout, profile=True)
        ops = _profile_ops(mlf)
        if res.op_ticks is None or len(res.op_ticks) != len(ops):
            raise TuneError(f"batch {v}: the firmware timed {len(res.op_ticks or [])} operators, "
                            f"the archive lists {len(ops)}")
        import numpy as np

        if reference is None:
            reference = res.outputs
        elif any(not np.array_equal(a, b) for a, b in zip(reference, res.outputs, strict=True)):
            used = sorted({f"{op['kind']}:{op['variant']}" for op in ops if op.get("variant")})
            raise TuneError(
                f"batch {v}: outputs differ from the first batch's on the same input; one of the variants "
                f"{', '.join(used)} computes different bits (a kernel bug): nothing of this batch was logged"
            )
        added = 0
        for op, ticks in zip(ops, res.op_ticks, strict=True):
            key = (op["signature"], op.get("variant"))
            if op.get("variant") and key in pending:
                records.append(Record(op["signature"], tgt.name, version, op["variant"], int(ticks)))
                pending.discard(key)
                added += 1
        result.batches += 1
        result.measured += added
        _write_log(log, records)
        shutil.rmtree(batch, ignore_errors=True)
        mlf.unlink(missing_ok=True)
    if not log.exists():
        _write_log(log, records)
    best = best_variants(records, tgt, version)
    by_sig: dict[str, dict[str, int]] = {}
    for r in records:
        if r.target == tgt.name and r.compiler == version:
            by_sig.setdefault(r.signature, {})[r.variant] = r.ticks
    for i, node, names in tunable:
        result.rows.append({"node": i, "kind": node.kind, "name": node.name, "signature": sigs[i],
                            "variants": list(names), "ticks": by_sig.get(sigs[i], {}),
                            "best": best.get(sigs[i], names[0])})
    return result
