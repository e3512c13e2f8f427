"""The corpus (tests/corpus/): graphs we did not generate, differential against TensorFlow, imported and optimized,
at B = 1, 7, 512 with ordinary and hostile inputs; every output compared (the embedding stage included)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_matches_tf
from corpus import ENTRIES, harness

NAMES = sorted(ENTRIES)


def _compare(entry, model, batch: int, hostile: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    feeds = entry.feeds(rng, batch, hostile)
    got, exp = harness.run_both(entry, model, feeds)
    what = f"{entry.name} B={batch} {'hostile' if hostile else 'ordinary'}"
    if isinstance(exp, Exception) or isinstance(got, Exception):
        assert_matches_tf(got, exp, what)
        return
    assert set(exp) <= set(got), f"{what}: outputs {sorted(got)} lack TF's {sorted(set(exp) - set(got))}"
    for key in sorted(exp):
        assert_matches_tf(got[key], exp[key], f"{what} output {key!r}")


@pytest.mark.parametrize("optimized", [False, True], ids=["imported", "optimized"])
@pytest.mark.parametrize("name", NAMES)
def test_corpus_matches_tf(name, optimized):
    entry = ENTRIES[name]
    model, _ = harness.built(entry, optimized)
    for i, batch in enumerate(entry.batches):
        for hostile in (False, True):
            _compare(entry, model, batch, hostile, seed=1000 * i + hostile)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_fuses_into_one_kernel(name):
    from recom_tvm.report import relax_op_counts

    entry = ENTRIES[name]
    _, mod = harness.built(entry, True)
    fused = relax_op_counts(mod).get("recom.fused_embedding", 0)
    if entry.fused:
        assert fused == 1, f"{name}: {fused} fused kernels; facts: {list(mod.attrs['recom_tvm.facts'])[-5:]}"
    else:
        assert entry.why_not_fused, f"{name} is marked not fused without saying why"


@pytest.mark.parametrize("name,how", [(n, how) for n in NAMES for how in ENTRIES[n].user_imports])
def test_corpus_user_imports(name, how):
    """A frozen graph imported the ways users often do (issue 13: the signature's outputs left out picked up the
    table initializers, 'unsupported op LookupTableImportV2'): the graph's sinks are its outputs, features come
    from the placeholders (sparse_placeholder triples grouped), and the result matches TF."""
    import recom_tvm

    entry = ENTRIES[name]
    root, art = harness.artifact(entry)
    sig = art["signature"]
    mod, params, spec = harness.imported(entry, how)
    tensors = {o["name"]: o["tensor"] for o in spec.outputs}
    assert sig["outputs"]["score"] in tensors.values(), f"{name} {how}: outputs {tensors}"
    if how == "no_signature":
        assert sorted(f["name"] for f in spec.features) == sorted(sig["inputs"]), spec.features
    model = recom_tvm.build(mod, "llvm", params)
    ref = harness.FrozenGraphRunner(f"{root}/{art['pb']}", {"inputs": sig["inputs"], "outputs": tensors},
                                    assets=harness.assets(entry))
    for hostile in (False, True):
        feeds = entry.feeds(np.random.default_rng(7 + hostile), 7, hostile)
        exp, got = ref(feeds), model.run(feeds)
        for key in sorted(exp):
            assert_matches_tf(got[key], exp[key], f"{name} ({how}) {'hostile' if hostile else 'ordinary'} {key}")
