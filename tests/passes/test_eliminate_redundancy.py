"""EliminateRedundancy: one Before/Expected per rewrite rule."""

import tvm
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from recom_tvm.ops import defs as Rc
from recom_tvm.passes import EliminateRedundancy, RemoveDeadCode
from recom_tvm.passes.eliminate_redundancy import FACTS_ATTR

from .helpers import hashed, spec_of, strip, with_spec

LABEL = "GatherV2 node 'g' (column 'c')"
SPARSE = [{"name": "f", "kind": "sparse", "tensors": {"indices": "idx:0", "values": "v:0", "dense_shape": "s:0"}}]


def run(mod, rules=None):
    return RemoveDeadCode()(EliminateRedundancy(rules)(mod))


@I.ir_module
class ImportedColumn:
    """What the importer makes of one hash-bucket embedding column (mean), its filter already folded away."""

    @R.function
    def main(idx: R.Tensor(("n", 2), "int64"), ids: R.Tensor(("n",), "int64"), t: R.Tensor((100, 8), "float32"),
             s: R.Shape(["B", "L"])):
        n = T.int64()
        B = T.int64()
        L = T.int64()
        m = T.int64()
        u = T.int64()
        S = T.int64()
        with R.dataflow():
            sf = Rc.sparse_fill_empty_rows(idx, ids, R.const(0, "int64"), R.shape([B, L]))
            oi = R.match_cast(sf[0], R.Tensor((m, 2), "int64"))
            ov = R.match_cast(sf[1], R.Tensor((m,), "int64"))
            empty = sf[2]
            seg = R.reshape(R.strided_slice(oi, (1,), (0,), (1,), (1,), assume_inbound=True), R.shape([m]))
            un = Rc.unique(ov, "int32")
            y = R.match_cast(un[0], R.Tensor((u,), "int64"))
            rows = Rc.gather(t, y, 0, True, LABEL)
            emb0 = Rc.sparse_segment_reduce(rows, un[1], seg, -1, "mean")
            emb = R.match_cast(emb0, R.Tensor((S, 8), "float32"))
            z = R.zeros_like(emb)
            cond = R.reshape(R.broadcast_to(R.reshape(empty, R.shape([B, 1])), R.shape([B, 8])), R.shape([B, 8]))
            cond2 = R.match_cast(cond, R.Tensor((S, 8), "bool"))
            out = R.where(cond2, z, emb)
            R.output(out)
        return out


def test_sparse_column_becomes_one_bag():
    @I.ir_module
    class Expected:
        @R.function
        def main(idx: R.Tensor(("n", 2), "int64"), ids: R.Tensor(("n",), "int64"),
                 t: R.Tensor((100, 8), "float32"), s: R.Shape(["B", "L"])):
            n = T.int64()
            B = T.int64()
            with R.dataflow():
                r = R.strided_slice(idx, (1,), (0,), (1,), assume_inbound=False)
                rows = R.reshape(r, R.shape([n]))
                out = Rc.embedding_bag(t, ids, rows, R.const(True, "bool"), B, "mean", False, LABEL)
                R.output(out)
            return out

    mod = with_spec(ImportedColumn, inputs={"ids": ("host", "h:0")}, host_plan=[hashed("h:0", 100)],
                    features=SPARSE)
    after = run(mod)
    tvm.ir.assert_structural_equal(strip(after), Expected)
    spec = spec_of(after)
    assert spec.sort_rows == ["f"]  # rows come from a feed: sorted on the host (TF's SparseFillEmptyRows order)
    assert spec.id_checks == []  # hashed ids lie in [0, 100): proven
    facts = list(after.attrs[FACTS_ATTR])
    assert any("embedding_bag(mean)" in f for f in facts) and any("range check proven" in f for f in facts)


def test_unproven_ids_of_a_feed_are_checked_on_the_host():
    mod = with_spec(ImportedColumn, features=SPARSE)  # ids: a plain feed, any value
    after = run(mod)
    spec = spec_of(after)
    assert spec.id_checks == [{"tensor": "ids:0", "limit": 100, "label": LABEL}]
    bag = [b.value for b in after["main"].body.blocks[0].bindings if "embedding_bag" in str(b.value.op)][0]
    assert int(bag.args[6].value) == 0  # no device check left


def test_rule_can_be_disabled():
    mod = with_spec(ImportedColumn, inputs={"ids": ("host", "h:0")}, host_plan=[hashed("h:0", 100)],
                    features=SPARSE)
    after = run(mod, rules=["where_all_true", "gather_identity"])
    assert "sparse_fill_empty_rows" in after["main"].script()


def test_one_id_per_row_is_a_plain_gather():
    @I.ir_module
    class Before:
        @R.function
        def main(ids: R.Tensor(("B",), "int64"), t: R.Tensor((11, 8), "float32")):
            B = T.int64()
            with R.dataflow():
                rows = R.arange(0, B, 1, dtype="int64")
                out = Rc.embedding_bag(t, ids, rows, R.const(True, "bool"), B, "mean", False, LABEL)
                R.output(out)
            return out

    @I.ir_module
    class Expected:
        @R.function
        def main(ids: R.Tensor(("B",), "int64"), t: R.Tensor((11, 8), "float32")):
            B = T.int64()
            with R.dataflow():
                out = Rc.gather(t, ids, 0, False, LABEL)
                R.output(out)
            return out

    tvm.ir.assert_structural_equal(strip(run(with_spec(Before)))["main"], Expected["main"])


def test_where_over_all_true_mask_is_arange():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("n",), "int64")):
            n = T.int64()
            k = T.int64()
            with R.dataflow():
                m = R.full(R.shape([n]), R.const(True, "bool"), dtype="bool")
                w0 = Rc.where(m)
                w = R.match_cast(w0, R.Tensor((k, 1), "int64"))
                g = Rc.gather(x, R.reshape(w, R.shape([k])), 0, True, "lbl")
                R.output(g)
            return g

    after = run(with_spec(Before))
    main = after["main"]
    assert main.body.body.same_as(main.params[0])  # gather(x, arange(len(x))) is x
    assert all(len(block.bindings) == 0 for block in main.body.blocks)


def test_dense_padded_input_needs_no_compaction():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("B", "W"), "int64"), t: R.Tensor((20, 4), "float32")):
            B = T.int64()
            W = T.int64()
            k = T.int64()
            with R.dataflow():
                m = R.not_equal(x, R.const(-1, "int64"))
                w = R.match_cast(Rc.where(m), R.Tensor((k, 2), "int64"))
                ids = R.gather_nd(x, w)
                rows = R.reshape(R.strided_slice(w, (1,), (0,), (1,), assume_inbound=True), R.shape([k]))
                keep = R.greater_equal(ids, R.const(0, "int64"))
                out = Rc.embedding_bag(t, ids, rows, keep, B, "sum", False, LABEL)
                R.output(out)
            return out

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("B", "W"), "int64"), t: R.Tensor((20, 4), "float32")):
            B = T.int64()
            W = T.int64()
            with R.dataflow():
                m = R.not_equal(x, R.const(-1, "int64"))
                r = R.arange(0, B, 1, dtype="int64")
                r2 = R.reshape(r, R.shape([B, 1]))
                r3 = R.broadcast_to(r2, R.shape([B, W]))
                keep = R.greater_equal(x, R.const(0, "int64"))  # the filter, lifted to the grid
                both = R.logical_and(m, keep)
                ids = R.reshape(x, R.shape([B * W]))
                rows = R.reshape(r3, R.shape([B * W]))
                mask = R.reshape(both, R.shape([B * W]))
                out = Rc.embedding_bag(t, ids, rows, mask, B, "sum", False, LABEL)
                R.output(out)
            return out

    tvm.ir.assert_structural_equal(strip(run(with_spec(Before))), Expected)


# ------------------------------------------------------------------------------ Keras 3 forms (corpus graphs)
@I.ir_module
class KerasEmbedding:
    """Keras 3's Embedding over a [B, 1] id input: negative ids count from the end (fix_negative_indices)."""

    @R.function
    def main(x: R.Tensor(("B", 1), "int64"), t: R.Tensor((30, 4), "float32")):
        B = T.int64()
        with R.dataflow():
            wrapped = R.where(R.less(x, R.const(0, "int64")), R.add(x, R.const(30, "int64")), x)
            e = Rc.gather(t, wrapped, 0, True, LABEL)
            out = R.reshape(e, R.shape([B, 4]))
            R.output(out)
        return out


def test_wrapped_ids_of_a_feed_are_checked_on_the_host():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("B", 1), "int64"), t: R.Tensor((30, 4), "float32")):
            B = T.int64()
            with R.dataflow():
                wrapped = R.where(R.less(x, R.const(0, "int64")), R.add(x, R.const(30, "int64")), x)
                e = Rc.gather(t, wrapped, 0, False, LABEL)
                out = R.reshape(e, R.shape([B, 4]))
                R.output(out)
            return out

    after = run(with_spec(KerasEmbedding))
    tvm.ir.assert_structural_equal(strip(after), Expected)
    # TF's gather rejects the wrapped id, i.e. raw ids outside [-30, 30): checked on the raw feed before launch
    assert spec_of(after).id_checks == [{"tensor": "x:0", "limit": 30, "label": LABEL, "low": -30}]


def test_wrap_by_another_amount_keeps_the_device_check():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("B", 1), "int64"), t: R.Tensor((30, 4), "float32")):
            B = T.int64()
            with R.dataflow():
                wrapped = R.where(R.less(x, R.const(0, "int64")), R.add(x, R.const(31, "int64")), x)
                e = Rc.gather(t, wrapped, 0, True, LABEL)
                out = R.reshape(e, R.shape([B, 4]))
                R.output(out)
            return out

    after = run(with_spec(Before))
    tvm.ir.assert_structural_equal(strip(after), Before)
    assert spec_of(after).id_checks == []


def test_select_on_a_decided_condition_keeps_one_operand():
    @I.ir_module
    class Before:
        @R.function
        def main(h: R.Tensor(("B", 1), "int64"), a: R.Tensor(("B", 1), "int64")):
            B = T.int64()
            with R.dataflow():
                never = R.full(R.shape([B, 1]), R.const(False, "bool"), "bool")
                out = R.where(never, a, h)
                R.output(out)
            return out

    @I.ir_module
    class Expected:
        @R.function
        def main(h: R.Tensor(("B", 1), "int64"), a: R.Tensor(("B", 1), "int64")):
            return h

    tvm.ir.assert_structural_equal(strip(run(with_spec(Before))), Expected)


def test_stacked_field_embeddings_become_a_reshaped_concat():
    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor(("B", 1, 4), "float32"), b: R.Tensor(("B", 1, 4), "float32")):
            B = T.int64()
            with R.dataflow():
                out = R.concat((a, b), axis=1)
                R.output(out)
            return out

    @I.ir_module
    class Expected:
        @R.function
        def main(a: R.Tensor(("B", 1, 4), "float32"), b: R.Tensor(("B", 1, 4), "float32")):
            B = T.int64()
            with R.dataflow():
                ra = R.reshape(a, R.shape([B, 4]))
                rb = R.reshape(b, R.shape([B, 4]))
                c = R.concat((ra, rb), axis=1)
                out = R.reshape(c, R.shape([B, 2, 4]))
                R.output(out)
            return out

    after = run(with_spec(Before))
    tvm.ir.assert_structural_equal(strip(after), Expected)
    assert any("stacked on axis 1" in f for f in after.attrs[FACTS_ATTR])


@I.ir_module
class AssertedColumn:
    """ImportedColumn whose ids feed is also read by an assert (all(ids < 100), as tf.debugging.assert_less)."""

    @R.function
    def main(idx: R.Tensor(("n", 2), "int64"), ids: R.Tensor(("n",), "int64"), t: R.Tensor((100, 8), "float32"),
             s: R.Shape(["B", "L"])):
        n = T.int64()
        B = T.int64()
        L = T.int64()
        m = T.int64()
        u = T.int64()
        S = T.int64()
        with R.dataflow():
            ok = R.astype(R.min(R.astype(R.less(ids, R.const(100, "int64")), "int32"), axis=[0]), "bool")
            sf = Rc.sparse_fill_empty_rows(idx, ids, R.const(0, "int64"), R.shape([B, L]))
            oi = R.match_cast(sf[0], R.Tensor((m, 2), "int64"))
            ov = R.match_cast(sf[1], R.Tensor((m,), "int64"))
            empty = sf[2]
            seg = R.reshape(R.strided_slice(oi, (1,), (0,), (1,), (1,), assume_inbound=True), R.shape([m]))
            un = Rc.unique(ov, "int32")
            y = R.match_cast(un[0], R.Tensor((u,), "int64"))
            rows = Rc.gather(t, y, 0, True, LABEL)
            emb0 = Rc.sparse_segment_reduce(rows, un[1], seg, -1, "mean")
            emb = R.match_cast(emb0, R.Tensor((S, 8), "float32"))
            z = R.zeros_like(emb)
            cond = R.reshape(R.broadcast_to(R.reshape(empty, R.shape([B, 1])), R.shape([B, 8])), R.shape([B, 8]))
            cond2 = R.match_cast(cond, R.Tensor((S, 8), "bool"))
            out = R.where(cond2, z, emb)
            R.output(out, ok)
        return (out, ok)


def test_an_order_free_reader_of_the_ids_does_not_stop_sorting_on_the_host():
    """Sorting a feature's entries by row on the host is safe when its other readers do not depend on the order
    (an assert's all() over the ids): the column still becomes one bag."""
    mod = with_spec(AssertedColumn, inputs={"ids": ("feed", "v:0")}, features=SPARSE)
    after = run(mod, rules=["sparse_column"])
    counts = {k for k in str(after["main"]).split() if "embedding_bag" in k}
    assert counts, after["main"]
    assert spec_of(after).sort_rows == ["f"]
