#!/usr/bin/env python3
"""Build the TFLite Micro peer: TFLM libraries (reference and CMSIS-NN kernels) and one
firmware per model and board, for bench/qemu_cycles.py --tflm-peer and run.py.

Sources are trees fetched beforehand (bare git directories as the fetch tool brings them,
git work trees, or plain directories); nothing is downloaded. From a bare git directory the
version TFLM's own download scripts pin is exported when the repository has it (else HEAD,
recorded in the manifest). Each source is given by an option, an environment variable
(TFLM_PEER_<NAME>, e.g. TFLM_PEER_CMSIS_NN) or found as OWNER+NAME/repo under --mirror.

Usage:
  python bench/tflm_peer/build.py --mirror /work/.mirror --out /tmp/tflm_peer
  python bench/tflm_peer/build.py --tflm DIR --cmsis-nn DIR --cmsis DIR --cortex-dfp DIR \\
      --flatbuffers DIR --gemmlowp DIR --ruy DIR --kissfft DIR --out DIR [--boards mps2_an386]
      [--models DIR] [--kernels ref,cmsis_nn] [--reuse-libs] [--run]

Then: python bench/tflm_peer/run.py OUT  (instruction counts per model and kernel set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peer  # noqa: E402

SOURCE_KEYS = ("tflm",) + tuple(d.key for d in peer.DEPS)
REPOS = {"tflm": peer.TFLM_REPO, **{d.key: d.repo for d in peer.DEPS}}


def source_paths(args: argparse.Namespace) -> dict[str, Path]:
    """Each source tree from its option, its environment variable or the mirror directory."""
    paths: dict[str, Path] = {}
    for key in SOURCE_KEYS:
        given = getattr(args, key) or os.environ.get(f"TFLM_PEER_{key.upper()}")
        if not given and args.mirror:
            cand = Path(args.mirror) / REPOS[key].replace("/", "+") / "repo"
            if cand.exists():
                given = str(cand)
        if given:
            paths[key] = Path(given)
    return paths


def build_model(
    model: Path,
    out: Path,
    boards: dict[str, Any],
    libs: dict[str, dict[str, Any]],
    resolver_header: Path,
) -> dict[str, Any]:
    """Sources, probe and final firmware of `model` for every board and kernel set."""
    model_dir = out / "models" / model.stem
    record = peer.write_model_sources(model, model_dir, resolver_header)
    record["firmware"] = {}
    for board_name, (board_dir, board_objs, flags) in boards.items():
        per_board: dict[str, Any] = {}
        for kernels, lib_info in libs[board_name].items():
            fw_dir = out / "fw" / board_name / kernels / model.stem
            try:
                objs = peer.compile_harness(fw_dir, model_dir, lib_info, flags)
                lib = out / lib_info["lib"]
                link = (board_dir, board_objs, flags, lib)
                probe = peer.link_image(fw_dir / "probe.elf", objs, *link, peer.PROBE_ARENA_BYTES, True)
                res = peer.run_firmware(probe, board_name, timeout=120)
                if "error" in res or "arena_used" not in res:
                    raise peer.PeerError(f"probe run: {res.get('error')} {res.get('log')}")
                used = -(-res["arena_used"] // peer.ARENA_ALIGN) * peer.ARENA_ALIGN
                elf = fw_dir / "image.elf"
                for slack in peer.ARENA_SLACK:
                    peer.link_image(elf, objs, *link, used + slack, False)
                    res = peer.run_firmware(elf, board_name)
                    if "error" not in res:
                        break
                else:
                    raise peer.PeerError(
                        f"no arena up to {used + slack} B works: {res.get('error')} {res.get('log')}"
                    )
                sizes = peer.section_sizes(elf)
                per_board[kernels] = {
                    "elf": str(elf.relative_to(out)),
                    "arena_bytes": used + slack,
                    "arena_used_bytes": res["arena_used"],
                    "ticks_at_build": res.get("ticks"),
                    **sizes,
                }
                print(
                    f"# {model.name} {board_name} {kernels}: {res.get('ticks')} instructions", file=sys.stderr
                )
            except peer.PeerError as exc:
                per_board[kernels] = {"error": str(exc).splitlines()[0][:300]}
                print(f"# {model.name} {board_name} {kernels}: {exc}", file=sys.stderr)
        record["firmware"][board_name] = per_board
    return record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for key in SOURCE_KEYS:
        ap.add_argument(f"--{key.replace('_', '-')}", dest=key, help=f"source tree of github:{REPOS[key]}")
    ap.add_argument(
        "--mirror", default=os.environ.get("TFLM_PEER_MIRROR"), help="directory of OWNER+NAME/repo"
    )
    ap.add_argument("--out", type=Path, required=True, help="build directory (created)")
    ap.add_argument("--boards", default="mps2_an386", help="comma-separated qemu_arm boards")
    ap.add_argument("--kernels", default=",".join(peer.KERNELS), help="comma-separated: ref, cmsis_nn")
    ap.add_argument("--models", type=Path, default=peer.REPO.parent / "shared" / "models")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--python", help="a python3 with numpy and Pillow for TFLM's Makefile")
    ap.add_argument(
        "--reuse-libs", action="store_true", help="keep sources and libraries of a previous build"
    )
    ap.add_argument("--run", action="store_true", help="run every firmware afterwards and print the table")
    args = ap.parse_args()

    if not args.models.is_dir():
        ap.error(f"{args.models}: no models directory (pass --models DIR)")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    kernels = tuple(k for k in args.kernels.split(",") if k)
    bad = [k for k in kernels if k not in peer.KERNELS]
    if bad:
        ap.error(f"unknown kernel set(s) {bad}; choose from {peer.KERNELS}")
    board_names = [b for b in args.boards.split(",") if b]
    old: dict[str, Any] = {}
    if args.reuse_libs and (out / peer.MANIFEST).exists():
        old = peer.load_manifest(out)

    try:
        peer.check_cxx_headers()
        python = peer.find_python(out / "bin", args.python)
        start = time.monotonic()
        if old.get("sources"):
            sources = old["sources"]
        else:
            sources = peer.prepare_sources(source_paths(args), out, kernels)
        tree = out / "src" / "tflite-micro"
        manifest: dict[str, Any] = {
            "sources": sources,
            "python_for_make": python,
            "build_type": peer.BUILD_TYPE,
            "opt": peer.OPT,
            "libs": {},
            "models": {},
        }
        libs: dict[str, dict[str, Any]] = {}
        for board_name in board_names:
            libs[board_name] = {}
            for k in kernels:
                prev = old.get("libs", {}).get(board_name, {}).get(k)
                if prev and (out / prev["lib"]).exists():
                    libs[board_name][k] = prev
                    continue
                print(f"# TFLM library {board_name} {k} ...", file=sys.stderr, flush=True)
                log = out / "logs" / f"lib_{board_name}_{k}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                lib_dir = out / "lib" / f"{board_name}_{k}"
                libs[board_name][k] = peer.build_library(tree, board_name, k, lib_dir, args.jobs, log)
                print(f"#   {libs[board_name][k]['build_seconds']} s", file=sys.stderr, flush=True)
        manifest["libs"] = libs
        boards = {}
        for board_name in board_names:
            board_dir = out / "fw" / board_name / "board"
            flags = peer.write_board_tree(board_dir, board_name)
            boards[board_name] = (board_dir, peer.compile_board_objects(board_dir, flags), flags)
        header = tree / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
        models = sorted(p for p in args.models.iterdir() if p.suffix == ".tflite")
        for model in models:
            try:
                manifest["models"][model.stem] = build_model(model, out, boards, libs, header)
            except peer.PeerError as exc:
                manifest["models"][model.stem] = {"model": str(model), "error": str(exc)[:300]}
                print(f"# {model.name}: {exc}", file=sys.stderr)
            print(f"# {model.name}: built", file=sys.stderr, flush=True)
        manifest["build_seconds"] = round(time.monotonic() - start, 1)
    except peer.PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    (out / peer.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"# peer build in {out} ({manifest['build_seconds']} s)", file=sys.stderr)
    if args.run:
        import run

        for board_name in board_names:
            run.print_table(out, manifest, board_name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
