#!/usr/bin/env python3
"""One official generator checkpoint from several sub-module dumps, as the released files are:
ss_generator.ckpt holds BOTH the condition embedder (`_base_models.condition_embedder.*`, read by
sam3d-cond) and the flow generator (`_base_models.generator.*`, read by sam3d-ss-flow) in one
Lightning container {'state_dict': {...}} (spec/conditioning.md §9.1; the pipeline filters each
sub-module by its prefix, PL/inference_pipeline.py:229-290).

  python3 tools/ref/merge_ckpt.py OUT IN [IN ...]

merges the state dicts of the IN containers into OUT; a prefix group (`_base_models.<name>.`)
may come from one input only. The dump scripts write through merged() instead, so a
regenerated sub-module replaces its own group in an existing file and keeps the others
(dump_cond.py: the embedder; dump_ss_flow.py --ckpt-out: the generator).

Entries are grouped by prefix group in sorted order (condition_embedder before generator),
each group in its writer's order, so the bytes do not depend on which dump ran last.
"""
import os
import sys
from collections import OrderedDict

KEY = "state_dict"


def group(name):
    """The prefix group of a state-dict key: '_base_models.<name>.' (the first two dotted
    components plus the dot), or the whole first component for other keys."""
    parts = name.split(".")
    return ".".join(parts[:2]) + "." if len(parts) > 2 else parts[0]


def _load(path):
    import torch
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not isinstance(obj.get(KEY), dict):
        raise SystemExit(f"merge_ckpt: {path} is not an official {{'{KEY}': ...}} container")
    return obj


def ordered(entries):
    """entries: list of (key, tensor) -> OrderedDict grouped by sorted prefix group, each
    group in the given order."""
    groups = OrderedDict()
    for k, v in entries:
        groups.setdefault(group(k), []).append((k, v))
    out = OrderedDict()
    for g in sorted(groups):
        out.update(groups[g])
    return out


def merged(path, container, prefix):
    """The container to write at `path`: container[KEY] (every key starts with `prefix`) plus
    the entries an existing official container at `path` holds outside `prefix` (its entries
    under `prefix` are replaced). Other top-level keys of `container` are kept as given."""
    sd = container[KEY]
    assert all(k.startswith(prefix) for k in sd), f"a key outside {prefix}"
    keep = []
    if os.path.exists(path):
        keep = [(k, v) for k, v in _load(path)[KEY].items() if not k.startswith(prefix)]
    out = dict(container)
    out[KEY] = ordered(keep + list(sd.items()))
    return out


def main(argv):
    if len(argv) < 3 or argv[1].startswith("-"):
        print(__doc__)
        return 2
    import torch
    entries, owner = [], {}
    for p in argv[2:]:
        for k, v in _load(p)[KEY].items():
            g = group(k)
            if owner.setdefault(g, p) != p:
                raise SystemExit(f"merge_ckpt: prefix group '{g}' is in both {owner[g]} and {p}")
            entries.append((k, v))
    sd = ordered(entries)
    os.makedirs(os.path.dirname(os.path.abspath(argv[1])), exist_ok=True)
    torch.save({KEY: sd}, argv[1])
    counts = OrderedDict()
    for k in sd:
        counts[group(k)] = counts.get(group(k), 0) + 1
    print(f"wrote {argv[1]}: " + ", ".join(f"{g}* {n} tensors" for g, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
