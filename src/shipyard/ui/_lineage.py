"""The lineage graph of a dataset version (parent datasets → this version →
derived versions and training runs → model versions → deployments), laid
out in columns and drawn as server-side SVG: no script, every node a link.

The facts come from the library (``ws.datasets``, ``ws.models.lineage``,
``ws.deployments``); this module only places them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from shipyard import Workspace

NODE_W, NODE_H = 200, 36
COL_GAP, ROW_GAP, PAD = 70, 14, 10
#: Most characters of a label drawn in a node (the whole label is its tooltip).
LABEL_CHARS = 26
#: Most nodes in one column; the rest are counted in a last node.
MAX_PER_COLUMN = 40
#: Most model versions whose lineage is read.
MAX_VERSIONS = 2000
COLUMNS = ("parents", "dataset", "runs", "models", "deployments")


@dataclass
class Node:
    id: str
    kind: str  # dataset, this, run, model, deployment, more
    label: str
    sub: str = ""
    href: str | None = None
    column: int = 0
    x: float = 0.0
    y: float = 0.0

    @property
    def short(self) -> str:
        return self.label if len(self.label) <= LABEL_CHARS else \
            self.label[:LABEL_CHARS - 1] + "…"


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0
    paths: list[dict[str, Any]] = field(default_factory=list)

    def add(self, node: Node) -> Node:
        for existing in self.nodes:
            if existing.id == node.id:
                return existing
        self.nodes.append(node)
        return node

    def link(self, a: str, b: str) -> None:
        if (a, b) not in self.edges:
            self.edges.append((a, b))


def layout(graph: Graph) -> Graph:
    """Place nodes in their columns (empty columns closed up), top to
    bottom in insertion order, and draw each edge as a curve from the right
    side of its source to the left side of its target.

    >>> g = Graph()
    >>> _ = g.add(Node("a", "dataset", "a@1", column=0)), g.add(Node("b", "run", "r", column=2))
    >>> g.link("a", "b")
    >>> g = layout(g)
    >>> [(n.id, n.x, n.y) for n in g.nodes], g.width, len(g.paths)
    ([('a', 10, 10), ('b', 280, 10)], 490, 1)
    """
    used = sorted({n.column for n in graph.nodes})
    place = {c: i for i, c in enumerate(used)}
    rows: dict[int, int] = {}
    for node in graph.nodes:
        col = place[node.column]
        row = rows.get(col, 0)
        rows[col] = row + 1
        node.x = PAD + col * (NODE_W + COL_GAP)
        node.y = PAD + row * (NODE_H + ROW_GAP)
    graph.width = PAD * 2 + len(used) * NODE_W + max(len(used) - 1, 0) * COL_GAP
    graph.height = PAD * 2 + max(rows.values(), default=0) * (NODE_H + ROW_GAP) - ROW_GAP
    by_id = {n.id: n for n in graph.nodes}
    graph.paths = []
    for a, b in graph.edges:
        if a not in by_id or b not in by_id:
            continue
        na, nb = by_id[a], by_id[b]
        x1, y1 = na.x + NODE_W, na.y + NODE_H / 2
        x2, y2 = nb.x, nb.y + NODE_H / 2
        dx = max((x2 - x1) / 2, 20)
        graph.paths.append({"d": f"M{x1:g},{y1:g} C{x1 + dx:g},{y1:g} {x2 - dx:g},{y2:g} "
                                 f"{x2:g},{y2:g}", "from": a, "to": b})
    return graph


def _dataset_href(ref: str) -> str:
    name, _, version = ref.rpartition("@")
    return f"/datasets/{quote(name, safe='')}/{version}"


def _deployment_nodes(ws: Workspace, graph: Graph, name: str) -> None:
    """The deployment of model ``name``, linked from the versions of the
    graph that its primary and candidate refs name now."""
    from shipyard.errors import NotFoundError

    record = ws.deployments.get(name)
    if record is None:
        return
    spec = record.deployment
    for role in ("primary", "candidate"):
        ref = getattr(spec, role)
        if ref is None:
            continue
        try:
            version = ws.models.get(ref).version
        except NotFoundError:
            continue
        target = f"m:{name}@{version}"
        if any(n.id == target for n in graph.nodes):
            graph.add(Node(f"x:{name}", "deployment", f"{name}: {spec.strategy}",
                           f"revision {record.revision}",
                           f"/deployments/{quote(name, safe='')}", 4))
            graph.link(target, f"x:{name}")


def model_lineage(ws: Workspace, mv: Any) -> Graph:
    """Dataset versions → training run → model version ``mv`` → its deployment."""
    lineage = ws.models.lineage(mv)
    refs = list(dict.fromkeys([*lineage.dataset_versions,
                               *([mv.dataset_version] if mv.dataset_version else [])]))
    graph = Graph()
    for ref in refs[:MAX_PER_COLUMN]:
        graph.add(Node(f"d:{ref}", "dataset", ref, "training data", _dataset_href(ref), 1))
        graph.link(f"d:{ref}", f"r:{mv.run_id}")
    graph.add(Node(f"r:{mv.run_id}", "run", f"run {mv.run_id[:8]}", "training run",
                   f"/runs/{mv.run_id}", 2))
    graph.add(Node(f"m:{mv.ref}", "this", mv.ref, ", ".join(mv.aliases) or mv.status,
                   None, 3))
    graph.link(f"r:{mv.run_id}", f"m:{mv.ref}")
    _deployment_nodes(ws, graph, mv.name)
    return layout(graph)


def dataset_lineage(ws: Workspace, dv: Any) -> Graph:
    """The graph around dataset version ``dv`` (hrefs are relative to the
    UI's mount point)."""
    graph = Graph()
    for parent in dv.parents:
        graph.add(Node(f"d:{parent}", "dataset", parent, "parent", _dataset_href(parent), 0))
        graph.link(f"d:{parent}", f"d:{dv.ref}")
    graph.add(Node(f"d:{dv.ref}", "this", dv.ref, f"{dv.num_rows} rows", None, 1))
    children = ws.datasets.children(dv.ref)
    for child in children[:MAX_PER_COLUMN]:
        graph.add(Node(f"d:{child.ref}", "dataset", child.ref, "derived",
                       _dataset_href(child.ref), 2))
        graph.link(f"d:{dv.ref}", f"d:{child.ref}")
    # Training runs that read this version, the model versions they made,
    # and the deployments serving those versions now.
    versions = [mv for summary in ws.models.list() for mv in ws.models.versions(summary.name)]
    trained = [mv for mv in versions[-MAX_VERSIONS:] if mv.dataset_version == dv.ref
               or dv.ref in ws.models.lineage(mv).dataset_versions]
    runs = list(dict.fromkeys(mv.run_id for mv in trained))
    for run_id in runs[:MAX_PER_COLUMN]:
        graph.add(Node(f"r:{run_id}", "run", f"run {run_id[:8]}", "training run",
                       f"/runs/{run_id}", 2))
        graph.link(f"d:{dv.ref}", f"r:{run_id}")
    if len(runs) > MAX_PER_COLUMN:
        graph.add(Node("r:more", "more", f"{len(runs) - MAX_PER_COLUMN} more runs", "", None, 2))
    for mv in trained[:MAX_PER_COLUMN]:
        graph.add(Node(f"m:{mv.ref}", "model", mv.ref, ", ".join(mv.aliases) or mv.status,
                       f"/models/{quote(mv.name, safe='')}/{mv.version}", 3))
        graph.link(f"r:{mv.run_id}", f"m:{mv.ref}")
    if len(trained) > MAX_PER_COLUMN:
        graph.add(Node("m:more", "more", f"{len(trained) - MAX_PER_COLUMN} more versions", "",
                       None, 3))
    for name in dict.fromkeys(mv.name for mv in trained[:MAX_PER_COLUMN]):
        _deployment_nodes(ws, graph, name)
    return layout(graph)
