"""Compilation targets: which CPU the generated C is tuned for.

A fact about CPUs that the compiler, projects.yaml and the boards data all use, so it lives
below all three (importing it loads nothing of the compiler).

The generated C is correct on every target (each kernel variant has portable C beside its
SIMD path, chosen by the C compiler's own macros such as __ARM_FEATURE_DSP); the target
decides which variant each operator gets by default and keys the tuning log, so a kernel
measured fastest on a Cortex-M4 is picked for Cortex-M4 builds only.

Targets are named by CPU, as boards.json files name a board's `cpu` and as
arm-none-eabi-gcc's -mcpu does; a board whose CPU is not listed here (an AVR, an x86
emulator) gets the generic target.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CompileError


@dataclass(frozen=True)
class Target:
    """A CPU the compiler can tune for.

    dsp: Arm's DSP extension (SXTB16, SMLAD: two 16-bit multiply-adds per instruction).
    mve: Arm's M-profile vector extension (Helium).
    fpu: a hardware single-precision FPU (float32 kernels keep values in FPU registers).
    """

    name: str
    dsp: bool = False
    mve: bool = False
    fpu: bool = False

    @property
    def cpu(self) -> str:
        return self.name

    @staticmethod
    def parse(name: str | Target | None) -> Target:
        """The target called `name` (None: generic); CompileError listing the known ones."""
        if name is None:
            return GENERIC
        if isinstance(name, Target):
            return name
        key = str(name).strip().lower()
        if key in TARGETS:
            return TARGETS[key]
        raise CompileError(
            f"unknown target {name!r}; known targets: {', '.join(sorted(TARGETS))} "
            "(name the CPU, as -mcpu does; 'generic' for portable C)"
        )

    @staticmethod
    def for_cpu(cpu: str | None) -> Target:
        """The target for a board's `cpu` field: generic when the CPU is not one we tune for."""
        if not cpu:
            return GENERIC
        return TARGETS.get(str(cpu).strip().lower(), GENERIC)


GENERIC = Target("generic")

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        GENERIC,
        Target("cortex-m0"),
        Target("cortex-m0plus"),
        Target("cortex-m3"),
        Target("cortex-m4", dsp=True, fpu=True),
        Target("cortex-m7", dsp=True, fpu=True),
        Target("cortex-m33", dsp=True, fpu=True),
        Target("cortex-m55", dsp=True, mve=True, fpu=True),
    )
}
