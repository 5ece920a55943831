"""Writes docs/mutation-survivors.md from the last `mutmut run`: every mutant that survived in the
campaign's modules, its diff, and why it is left (a rule below, each one a reason a reviewer can
check against the diff). A survivor no rule explains is listed as **open**. Run from the repository
root after the campaign (docs/mutation-testing.md):

    python scripts/mutation_record.py > docs/mutation-survivors.md
"""
from __future__ import annotations

import re
import sys
from collections import Counter

from mutation_survivors import diff, results

# (name, test on the removed and added lines, reason). First match wins; order matters.
RULES = [
    ("message", lambda old, new: old.lstrip().startswith(("raise ", "f\"", "\"")) and "Error(" in old + new
     or re.search(r"Error\(None\)", new) or "check_finite(" in old or "pattern {mask.pattern}" in old,
     "wording of a refusal: the refusal (type and condition) is tested; its text is not a guarantee"),
    ("host-presence", lambda old, new: ("host" in old or "device_observed, observed)" in old) and re.search(r"\b(encode|features|teacher_outputs|late\.features)\(", old),
     "the host copy of the presence mask: the same values as the device mask on the CPU; it only spares a GPU sync"),
    ("epoch-without-dropout", lambda old, new: "step_presence(batch, epoch)" in old and "None" in new,
     "the epoch only seeds modality dropout, which this method (trained without it) never draws"),
    ("device", lambda old, new: re.search(r"\.to\(None\)|_frozen\(.*None\)", new) and "dtype" not in old,
     "a device argument: a no-op on the CPU, where the campaign runs (the gpu-marked tests cover devices)"),
    ("dtype", lambda old, new: re.search(r"dtype|astype|\.to\(", old) and re.search(r"dtype=None|astype\(None\)|\.to\(None\)|, \)|\(\)", new),
     "a dtype argument: the value already has it, or float64 instead of float32 (differences below 1e-7)"),
    ("warnings", lambda old, new: "errstate" in old, "a warning filter: no value changes"),
    ("logits-key", lambda old, new: '"logits": logits' in old and '"logits"' not in new.replace("XXlogitsXX", ""),
     "the step's logits are part of the documented step output, read by no caller (the loop reads loss and rows)"),
    ("softmax-dim", lambda old, new: re.search(r"softmax\(\+1\)", new), "dim +1 is dim -1 on the 2-D logits"),
    ("subsets-seed", lambda old, new: 'sample_masks("subsets"' in old,
     "the `subsets` protocol draws nothing at random: its seed is unused"),
    ("task-default", lambda old, new: 'task: str = "multiclass"' in old,
     "a fusion's default task is only compared with \"multilabel\"; any other string means multi-class"),
    ("teacher-width", lambda old, new: re.search(r"teacher_outputs\(.*(dim|num_classes)", old) or
     re.search(r"dim = ", old) or "features[self.modalities[0]].new_zeros" in old,
     "the width of an absent modality's placeholder: teacher_outputs skips modalities absent from the whole batch, "
     "so it is never read; any modality's tensor gives the same scalar zero"),
    ("fp32-ones", lambda old, new: "ones = np.ones((1, len(target))" in old,
     "the point estimate's weight row: a second identical row or float64 gives the same value (below 1e-7)"),
    ("widest-default", lambda old, new: "default=0" in old or ("per_seed.get(s, {})" in old and ">= 0" in new),
     "reached only when a method has the condition for the seed, so at least one row: the default is never read"),
    ("coefficients-init", lambda old, new: "self.coefficients_: dict[str, float] = {}" in old,
     "overwritten by every training step before the backward pass that reads it"),
    ("retention-or-true", lambda old, new: "if full is not None" in old,
     "with no full condition the lookup of (method, None) finds nothing: the same None"),
    ("resampler-empty-key", lambda old, new: "if key else None" in old and "or True" in new,
     "source_groups of no sources is None already"),
    ("smoothing", lambda old, new: "smoothing=False" in old and "smoothing=None" in new, "crepes reads None as False"),
    ("weighted-combine", lambda old, new: "present[m].to(branches[m].dtype)" in old,
     "bool presence times a float32 weight is float32 either way"),
    ("f1-denominator", lambda old, new: "denominator > 0" in old and re.search(r"denominator > 1|, 2\.0\)", new),
     "a denominator (2 tp + fp + fn, counts) of 0 or 1 means tp = 0: F1 is 0 whatever it is divided by"),
    ("optimiser-options", lambda old, new: 'method="bounded"' in old,
     "SciPy's minimize_scalar picks 'bounded' when given bounds and lower-cases the method; without "
     "`xatol` (or with an unknown option, warned about) its default 1e-5 is tighter: log T moves by less than 1e-4"),
    ("clip-above-one", lambda old, new: "1e-12, 1.0)" in old and re.search(r"1e-12, (2\.0|None)\)", new),
     "a probability never exceeds 1: the upper clip bound is never reached"),
    ("negative-reshape", lambda old, new: "reshape(-2" in new, "NumPy reads any negative size as the unknown one"),
    ("scalar-as-array", lambda old, new: "if (np.ndim(temperature)) or True" in new,
     "a scalar temperature as a (1, 1) array broadcasts the same"),
    ("falsy-none", lambda old, new: "mondrian=False" in old and "mondrian=None" in new,
     "read as `not mondrian`: None and False are both false"),
    ("deterministic-protocols", lambda old, new: "sample_masks(p, observed, 0)" in old,
     "`full` and `miss:<m>` draw nothing at random: the seed is unused"),
    ("cpu-tensor", lambda old, new: 'hasattr(p, "detach")' in old,
     "np.asarray reads a CPU tensor as .numpy() does (the campaign runs on the CPU; the GPU tests pass CUDA masks)"),
    ("numpy-default", lambda old, new: "allow_pickle=False" in old, "NumPy's np.load refuses pickles by default"),
    ("rate-of-rateless", lambda old, new: "if (self.default_rate is not None) or True" in new,
     "a protocol without a default rate refuses a rate above, so the rate is None either way"),
    ("blind-patterns", lambda old, new: "mondrian=False" in old and "None, COVERAGE" in new,
     "pattern-blind sets do not read the patterns"),
    ("mask-encoded", lambda old, new: re.search(r"if encoded is None else encoded|selection_score\(self, val, encoded\)|"
                                                r"method\.metric, encoded\)", old),
     "encoding again gives the same outputs (the argument only saves the work)"),
]


def reason(lines: list[str]) -> tuple[str, str]:
    old = " ".join(line[1:].strip() for line in lines if line.startswith("-"))
    new = " ".join(line[1:].strip() for line in lines if line.startswith("+"))
    for name, test, why in RULES:
        if test(old, new):
            return name, why
    return "open", ""


def main() -> int:
    status = results()
    left = sorted(name for name, (state, _) in status.items() if state in ("survived", "no tests"))
    rows, counts = [], Counter()
    for name in left:
        state, path = status[name]
        lines = diff(name, path)
        rule, why = reason(lines)
        counts[rule] += 1
        rows.append((name, state, rule, why, lines))
    print("# Surviving mutants, and why each is left\n")
    print("Written by `python scripts/mutation_record.py` from the last `mutmut run` (docs/mutation-testing.md).")
    print("Each survivor is matched to one reason; **open** means no reason yet: a test to write.\n")
    print("| reason | mutants |\n|---|---:|")
    for rule, n in counts.most_common():
        print(f"| {rule} | {n} |")
    for name, state, rule, why, lines in rows:
        print(f"\n### `{name}` ({state}): {rule}\n")
        if why:
            print(f"{why}.\n")
        print("```diff\n" + "\n".join(lines) + "\n```")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
