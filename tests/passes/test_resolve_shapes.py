"""ResolveShapes: Before/Expected."""

import tvm
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from recom_tvm.ops import defs as Rc
from recom_tvm.passes import ResolveShapes

from .helpers import spec_of, strip, with_spec


def test_symbol_bound_to_a_known_shape_is_substituted():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("n",), "int64"), t: R.Tensor((10, 4), "float32"), s: R.Shape(["B"])):
            n = T.int64()
            B = T.int64()
            k = T.int64()
            with R.dataflow():
                a = R.arange(0, n, 1, dtype="int64")
                a2 = R.match_cast(a, R.Tensor((k,), "int64"))
                bag = Rc.embedding_bag(t, x, a2, R.const(True, "bool"), B, "sum", False, "lbl")
                R.output(bag)
            return bag

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("n",), "int64"), t: R.Tensor((10, 4), "float32"), s: R.Shape(["B"])):
            n = T.int64()
            B = T.int64()
            with R.dataflow():
                a = R.arange(0, n, 1, dtype="int64")
                bag = Rc.embedding_bag(t, x, a, R.const(True, "bool"), B, "sum", False, "lbl")
                R.output(bag)
            return bag

    tvm.ir.assert_structural_equal(ResolveShapes()(Before), Expected)


def test_runtime_check_between_input_symbols_is_kept():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("a", 4), "float32"), y: R.Tensor(("b", 4), "float32")):
            a = T.int64()
            b = T.int64()
            with R.dataflow():
                y2 = R.match_cast(y, R.Tensor((a, 4), "float32"))
                z = R.add(x, y2)
                R.output(z)
            return z

    after = ResolveShapes()(Before)
    tvm.ir.assert_structural_equal(after, Before)


def test_input_symbols_asserted_equal_are_merged():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("a", 4), "float32"), y: R.Tensor(("b", 4), "float32")):
            a = T.int64()
            b = T.int64()
            with R.dataflow():
                y2 = R.match_cast(y, R.Tensor((a, 4), "float32"))
                z = R.add(x, y2)
                R.output(z)
            return z

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("a", 4), "float32"), y: R.Tensor(("a", 4), "float32")):
            a = T.int64()
            with R.dataflow():
                z = R.add(x, y)
                R.output(z)
            return z

    mod = with_spec(Before, assertions=[{"expr": ["eq", ["var", "b"], ["var", "a"]], "message": "concat"}])
    after = ResolveShapes()(mod)
    tvm.ir.assert_structural_equal(strip(after), Expected)
    spec = spec_of(after)
    assert spec.assertions == []  # now checked by every input agreeing on `a`
    assert [i["shape"] for i in spec.module_inputs] == [["a", "4"], ["a", "4"]]


def _eq(a: str, b: str) -> dict:
    return {"expr": ["eq", ["var", a], ["var", b]], "message": f"concat: {a} != {b}"}


def test_asserted_equal_chains_merge_into_one_symbol_in_any_order():
    """u == t then t == q (the order tf2_string_preprocessing's assertions came in, after some other graphs
    were imported in the same process): every batch symbol becomes q, not u -> t with t left behind."""
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("u", 4), "float32"), y: R.Tensor(("t", 4), "float32"),
                 z: R.Tensor(("q", 4), "float32")):
            return (x, y, z)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("q", 4), "float32"), y: R.Tensor(("q", 4), "float32"),
                 z: R.Tensor(("q", 4), "float32")):
            return (x, y, z)

    orders = [[_eq("u", "t"), _eq("t", "q")], [_eq("t", "q"), _eq("u", "t")],
              [_eq("u", "q"), _eq("t", "q"), _eq("u", "t")], [_eq("u", "t"), _eq("u", "q"), _eq("t", "q")]]
    for assertions in orders:
        after = ResolveShapes()(with_spec(Before, assertions=assertions))
        tvm.ir.assert_structural_equal(strip(after), Expected)
        spec = spec_of(after)
        assert spec.assertions == [], assertions
        assert [i["shape"] for i in spec.module_inputs] == [["q", "4"]] * 3, assertions
