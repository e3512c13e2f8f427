"""Which tensors of a graph with conditionals are computed, and under which predicates (TF's dead tensors).

Frozen graphs carry `tf.cond` and the guards of `tf.debugging.assert_*` as `Switch` / `Merge` (TF1 control flow,
or `If` lowered by TF or by `functions.py`). TensorFlow runs such a graph by marking the untaken output of each
`Switch` dead; deadness flows through data and control edges into every node downstream (a node with a dead
input is dead), and a `Merge` forwards whichever input is live. Here every tensor gets a status:

- `None`: computed unconditionally;
- `DEAD`: never computed (a `Switch` whose predicate is known when the model is compiled, and what follows);
- a frozenset of guards `(predicate, branch)`: computed when every predicate has that value. Both branches are
  then computed (they must be side-effect free), and the `Merge` becomes a select on the predicate.

The importer converts only live nodes, so an untaken branch may hold ops it cannot translate (dropout's
RandomUniform behind `training=False`).
"""

from __future__ import annotations

from .graph import Graph, Node

DEAD = "dead"
SWITCH_OPS = ("Switch", "RefSwitch")
MERGE_OPS = ("Merge", "RefMerge")


def combine(statuses) -> object:
    """The status of a node reading tensors of these statuses (not a Merge)."""
    guards: set = set()
    for st in statuses:
        if st is DEAD:
            return DEAD
        if st:
            guards |= st
    if not guards:
        return None
    keys = {}
    for key, branch in guards:
        if keys.setdefault(key, branch) != branch:
            return DEAD  # needs a predicate to be both true and false
    return frozenset(guards)


class Liveness:
    """Statuses of the nodes the import needs, filled in topological order (see `visit`)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.active = any(n.op in SWITCH_OPS for n in graph.nodes.values())
        self.may_die: set[str] = self._downstream_of_switches() if self.active else set()
        self.node_status: dict[str, object] = {}
        self.out_status: dict[tuple[str, int], object] = {}  # Switch outputs
        self.preds: dict[tuple[str, int], object] = {}  # predicate tensor -> its imported value

    def _downstream_of_switches(self) -> set[str]:
        users: dict[str, list[str]] = {}
        for node in self.graph.nodes.values():
            for src in {s for s, _ in node.inputs} | set(node.control_inputs):
                users.setdefault(src, []).append(node.name)
        stack = [n for n, node in self.graph.nodes.items() if node.op in SWITCH_OPS]
        seen = set(stack)
        while stack:
            for u in users.get(stack.pop(), []):
                if u not in seen:
                    seen.add(u)
                    stack.append(u)
        return seen

    # ------------------------------------------------------------------------------------------- planning
    def plan(self, keep: set[str], extra_roots: list[str]) -> tuple[set[str], set[str]]:
        """(nodes to convert, nodes whose status alone is needed): `keep` (the data ancestors of the outputs)
        grows by the predicates of the switches that decide deadness; control inputs that may be dead, and
        `extra_roots` (the Asserts), are tracked for their status only."""
        if not self.active:
            return keep, set()
        nodes = self.graph.nodes
        keep = set(keep)
        status_only: set[str] = set()
        stack = list(keep) + list(extra_roots)
        while stack:
            n = stack.pop()
            node = nodes[n]
            deps = list(node.control_inputs) + ([s for s, _ in node.inputs] if n not in keep else [])
            for d in deps:
                if d in self.may_die and d not in keep and d not in status_only and d in nodes:
                    status_only.add(d)
                    stack.append(d)
            if node.op in SWITCH_OPS and len(node.inputs) > 1:
                pred = node.inputs[1][0]
                if pred not in keep:
                    new = ({pred} | self.graph.ancestors([pred])) - keep
                    keep |= new
                    status_only -= new
                    stack.extend(new)
        return keep, status_only

    # --------------------------------------------------------------------------------------------- status
    def status(self, src: str, idx: int):
        """The status of tensor src:idx."""
        if (src, idx) in self.out_status:
            return self.out_status[(src, idx)]
        return self.node_status.get(src)

    def visit(self, node: Node) -> object:
        """The node's status from its inputs' (before its outputs exist); Switch outputs are set by `switched`."""
        if node.name not in self.may_die:
            return None
        ctrl = [self.node_status.get(c) for c in node.control_inputs]
        data = [self.status(s, i) for s, i in node.inputs]
        if node.op in MERGE_OPS:  # TF's executor: a Merge waits for its control inputs, dead or not
            live = [st for st in data if st is not DEAD]
            if not live:
                st = DEAD
            else:  # live under the guards all its live inputs share
                st = None if any(s is None for s in live) else (frozenset.intersection(*live) or None)
        else:
            st = combine(data + ctrl)
        self.node_status[node.name] = st
        if node.op in SWITCH_OPS:
            self.out_status[(node.name, 0)] = self.out_status[(node.name, 1)] = st
        return st

    def _canonical(self, tensor: tuple[str, int]) -> tuple[str, int]:
        """The tensor a predicate's value comes from, through Identity nodes (TF1's cond switches on
        `pred_id = Identity(pred)`) and Switch outputs (a nested cond's predicate enters the outer one through a
        Switch): every switch on one predicate gets one key."""
        for _ in range(64):
            node = self.graph.nodes[tensor[0]]
            if node.op not in ("Identity", "Snapshot") + SWITCH_OPS or not node.inputs:
                break
            tensor = node.inputs[0]
        return tensor

    def switched(self, node: Node, pred_value, known: bool | None) -> None:
        """Set a Switch's output statuses: the untaken one dead when the predicate is known (`known`), else both
        guarded by the predicate."""
        st = self.node_status.get(node.name)
        if st is DEAD:
            return
        key = self._canonical(node.inputs[1])
        if known is not None:
            self.out_status[(node.name, 0)] = DEAD if known else st
            self.out_status[(node.name, 1)] = st if known else DEAD
            return
        self.preds[key] = pred_value
        base = st or frozenset()
        self.out_status[(node.name, 0)] = combine([base, frozenset({(key, False)})])
        self.out_status[(node.name, 1)] = combine([base, frozenset({(key, True)})])
