"""Hostile model files are refused, with an ArtifactError and no side effect.

Each file is forged the way an attacker with write access to the artifact
store would: new blobs and a manifest naming them, loaded by digest through
``shipyard.train.load_model`` (what the registry calls). Every test runs with
a sentinel: a folder that must survive and a path that must never appear.
"""

from __future__ import annotations

import functools
import gc
import io
import json
import operator
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from shipyard.errors import ArtifactError, ShipyardError
from shipyard.store import ArtifactStore
from shipyard.train import TorchMLPClassifier, load_model, save_model
from shipyard.train._artifacts import canonical_json


@dataclass
class Sentinel:
    precious: Path  # must still exist, with its file, after every test
    pwned: Path     # must never be created

    def untouched(self) -> bool:
        gc.collect()  # run any __del__ a loaded object would have
        return (self.precious / "keep.txt").is_file() and not self.pwned.exists()


@pytest.fixture(autouse=True)
def sentinel(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("still here")
    guard = Sentinel(precious, tmp_path / "pwned")
    yield guard
    assert guard.untouched(), "a hostile artifact had a side effect"


def forge(store: ArtifactStore, fmt: str = "skops", metadata: dict | None = None,
          **parts: bytes | str) -> str:
    """A manifest naming ``parts`` (bytes to store, or digests already
    stored), as an attacker would write it; its digest."""
    digests = {role: store.put_bytes(data) if isinstance(data, bytes) else data
               for role, data in parts.items()}
    manifest = {"shipyard_model": 1, "format": fmt, "parts": digests,
                "metadata": metadata or {}}
    return store.put_bytes(canonical_json(manifest))


def refused(store: ArtifactStore, digest: str, match: str | None = None) -> ArtifactError:
    with pytest.raises(ShipyardError, match=match) as info:
        load_model(store, digest)
    assert isinstance(info.value, ArtifactError)
    return info.value


def outcomes_in_child(store: ArtifactStore, digests: dict[str, str]) -> dict[str, str]:
    """Load each digest in a child process (``{label: "refused: ..." or
    "loaded"}``), for files that would crash the process if a check missed
    them: a crash then fails the test instead of killing the test run."""
    script = textwrap.dedent("""
        import json, sys
        from shipyard.errors import ArtifactError
        from shipyard.store import ArtifactStore
        from shipyard.train import load_model
        store, outcomes = ArtifactStore(sys.argv[1]), {}
        for label, digest in json.loads(sys.argv[2]).items():
            try:
                load_model(store, digest)
                outcomes[label] = "loaded"
            except ArtifactError as exc:
                outcomes[label] = "refused: " + exc.message
            print(json.dumps(outcomes), flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script, store.root, json.dumps(digests)],
                          capture_output=True, text=True, timeout=240, check=False)
    lines = done.stdout.strip().splitlines()
    outcomes = json.loads(lines[-1]) if lines else {}
    assert done.returncode == 0, f"crashed after {list(outcomes)}: {done.stderr[-2000:]}"
    assert set(outcomes) == set(digests)
    return outcomes


def rewrite_skops(blob: bytes, schema=None, members: dict[str, bytes] | None = None) -> bytes:
    """``blob`` with its schema passed through ``schema(dict)`` (edited in
    place) and members replaced or added from ``members``."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        content = {name: zf.read(name) for name in zf.namelist()}
    tree = json.loads(content["schema.json"])
    if schema is not None:
        schema(tree)
    content["schema.json"] = json.dumps(tree).encode()
    content.update(members or {})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    return out.getvalue()


def nodes(tree):
    """Every skops node in a schema."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def npy(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


class Trap:
    """Unpickling it creates the sentinel's ``pwned`` folder."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


class Booby:
    """Loading it creates ``pwned``; collecting it deletes ``precious``
    (only when ``armed``, so the test's own copy stays harmless)."""

    def __setstate__(self, state):
        os.mkdir(state["pwned"])
        self.__dict__.update(state)

    def __del__(self):
        if self.__dict__.get("armed"):
            shutil.rmtree(self.__dict__["precious"])


@pytest.fixture(scope="module")
def fitted(classification):
    X, y = classification
    return LogisticRegression().fit(X, y)


# ----------------------------------------------- the numpy Repository trick
def test_numpy_repository_that_deletes_a_folder_is_refused(store, fitted, sentinel):
    import skops.io as sio
    from numpy.lib._datasource import Repository

    repo = Repository.__new__(Repository)  # no __init__: it would make a temp dir
    repo.__dict__.update(_destpath=str(sentinel.precious), _istmpdest=True, _baseurl="")
    fitted.cache_ = repo
    try:
        blob = sio.dumps(fitted)
    finally:
        repo._istmpdest = False  # our own copy must not delete the folder either
        del fitted.cache_, repo
    error = refused(store, forge(store, model=blob), r"numpy\.lib\._datasource\.Repository")
    assert "outside Shipyard's allow-list" in error.message
    assert sentinel.untouched()


def test_numpy_repository_in_a_lightgbm_preprocessor_is_refused(store, classification,
                                                                 sentinel):
    import lightgbm
    import skops.io as sio
    from numpy.lib._datasource import Repository

    X, y = classification
    model = Pipeline([("scale", StandardScaler()),
                      ("m", lightgbm.LGBMClassifier(n_estimators=3, verbose=-1))]).fit(X, y)
    good = save_model(model, store)
    scaler = model[0]
    repo = Repository.__new__(Repository)
    repo.__dict__.update(_destpath=str(sentinel.precious), _istmpdest=True, _baseurl="")
    scaler.cache_ = repo
    try:
        blob = sio.dumps(Pipeline([("scale", scaler)]))
    finally:
        repo._istmpdest = False
        del scaler.cache_, repo
    parts = {**good.parts, "preprocessor": blob}
    refused(store, forge(store, "lightgbm", good.metadata, **parts), "Repository")
    assert sentinel.untouched()


# ------------------------------------------------------------------ pickle
@pytest.fixture(scope="module")
def other_formats(tmp_path_factory, classification):
    """A real LightGBM and a real torch pipeline, saved: their parts to swap."""
    import lightgbm

    X, y = classification
    store = ArtifactStore(str(tmp_path_factory.mktemp("formats")))
    lgbm = save_model(lightgbm.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1)
                      .fit(X, y), store)
    torch = save_model(Pipeline([("scale", StandardScaler()),
                                 ("m", TorchMLPClassifier(hidden_sizes=(4,), max_epochs=2))])
                       .fit(X, y), store)
    return store, lgbm, torch


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("slot", ["manifest", "skops model", "lightgbm booster",
                                  "torch weights", "torch preprocessor"])
def test_a_pickle_presented_as_a_model_is_refused(other_formats, sentinel, slot, protocol):
    store, lgbm, torch = other_formats
    payload = pickle.dumps(Trap(sentinel.pwned), protocol=protocol)
    if slot == "manifest":
        digest = store.put_bytes(payload)
    elif slot == "skops model":
        digest = forge(store, model=payload)
    elif slot == "lightgbm booster":
        digest = forge(store, "lightgbm", **{**lgbm.parts, "booster": payload})
    elif slot == "torch weights":
        digest = forge(store, "torch", **{**torch.parts, "weights": payload})
    else:
        digest = forge(store, "torch", **{**torch.parts, "preprocessor": payload})
    refused(store, digest)
    assert sentinel.untouched()


def test_pickled_data_inside_a_skops_zip_is_refused(store, fitted, sentinel):
    import skops.io as sio

    blob = sio.dumps(fitted)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        array_file = next(n for n in zf.namelist() if n.endswith(".npy"))
    objects = np.array([Trap(sentinel.pwned)], dtype=object)
    as_object_array = rewrite_skops(blob, members={array_file: npy(objects, allow_pickle=True)})
    refused(store, forge(store, model=as_object_array), "holds Python objects")
    as_raw_pickle = rewrite_skops(blob, members={array_file: pickle.dumps(Trap(sentinel.pwned))})
    refused(store, forge(store, model=as_raw_pickle), "is not a plain .npy array")
    assert sentinel.untouched()


# ------------------------------------------------------- code references
def as_popen_object(blob: bytes) -> bytes:
    """The fitted LogisticRegression node retyped as subprocess.Popen."""
    def retype(tree):
        tree["__module__"], tree["__class__"] = "subprocess", "Popen"
    return rewrite_skops(blob, retype)


@pytest.mark.parametrize("make, names", [
    (lambda m, s: FunctionTransformer(func=os.system, kw_args={"command": f"mkdir {s}"}),
     r"posix\.system"),  # a builtin: skops stores it like a type
    (lambda m, s: FunctionTransformer(func=eval), r"builtins\.eval"),
    (lambda m, s: FunctionTransformer(func=shutil.rmtree), r"shutil\.rmtree \(a function\)"),
    (lambda m, s: FunctionTransformer(func=subprocess.Popen), r"subprocess\.Popen"),
    (lambda m, s: FunctionTransformer(func=m.predict),
     r"LogisticRegression\.predict \(a method\)"),
    (lambda m, s: FunctionTransformer(func=functools.partial(os.mkdir, str(s))),
     r"functools\.partial \(a partial function\)"),
    (lambda m, s: FunctionTransformer(func=operator.methodcaller("system", f"mkdir {s}")),
     r"operator\.methodcaller \(an operator call\)"),
])
def test_code_referenced_from_a_skops_file_is_refused_by_name(store, fitted, sentinel, make,
                                                               names):
    import skops.io as sio

    blob = sio.dumps(Pipeline([("f", make(fitted, sentinel.pwned)), ("m", fitted)]))
    refused(store, forge(store, model=blob), rf"refused to load .*contains .*{names}")
    assert sentinel.untouched()


def test_an_object_retyped_as_subprocess_popen_is_refused(store, fitted, sentinel):
    import skops.io as sio

    blob = as_popen_object(sio.dumps(fitted))
    refused(store, forge(store, model=blob), r"contains subprocess\.Popen, outside")


# ------------------------------------------------- side-effecting objects
@pytest.mark.parametrize("attached", [False, True])
def test_objects_with_side_effects_on_load_or_gc_are_refused(store, fitted, sentinel,
                                                             attached):
    import skops.io as sio

    booby = Booby.__new__(Booby)
    booby.__dict__.update(pwned=str(sentinel.pwned), precious=str(sentinel.precious),
                          armed=True)
    if attached:
        fitted.extra_ = booby
    try:
        blob = sio.dumps(fitted if attached else booby)
    finally:
        booby.armed = False
        if attached:
            del fitted.extra_
    refused(store, forge(store, model=blob), rf"contains {re.escape(__name__)}\.Booby")
    assert sentinel.untouched()


# ------------------------------------------------------ sizes and shapes
def test_an_array_header_claiming_a_huge_shape_is_refused(store, fitted):
    import skops.io as sio

    blob = sio.dumps(fitted)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        array_file = next(n for n in zf.namelist() if n.endswith(".npy"))
        original = np.load(io.BytesIO(zf.read(array_file)))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(original.dtype), "fortran_order": False,
                 "shape": (2**40,)})
    huge = header.getvalue() + original.tobytes()  # claims 8 TiB, holds a few bytes
    error = refused(store, forge(store, model=rewrite_skops(blob, members={array_file: huge})),
                    r"claims a \(1099511627776,\) array")
    assert str(original.dtype) in error.message
    too_short = npy(original)[:-8]
    refused(store, forge(store, model=rewrite_skops(blob, members={array_file: too_short})),
            "claims a")


@pytest.mark.parametrize("depth, match", [(150, "nested more than 200 levels"),
                                          (100_000, "not a valid skops file")])
def test_deeply_nested_structures_are_refused(store, fitted, depth, match):
    import skops.io as sio

    level = '{"__class__":"list","__module__":"builtins","__loader__":"ListNode","content":['
    nested = level * depth + "]}" * depth

    def deepen(tree):
        tree["content"]["content"]["deep_"] = "PLACEHOLDER"

    blob = rewrite_skops(sio.dumps(fitted), deepen)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        content = {name: zf.read(name) for name in zf.namelist()}
    content["schema.json"] = content["schema.json"].replace(b'"PLACEHOLDER"', nested.encode())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    refused(store, forge(store, model=out.getvalue()), match)


def test_deeply_nested_manifests_and_configs_are_refused(other_formats):
    store, lgbm, _ = other_formats
    nested = b"[" * 100_000 + b"]" * 100_000
    refused(store, store.put_bytes(nested), "not a model manifest")
    refused(store, forge(store, "lightgbm", **{**lgbm.parts, "config": nested}),
            "is not valid JSON")


def test_a_zip_bomb_is_refused_before_it_is_unpacked(store, fitted):
    import skops.io as sio

    blob = sio.dumps(fitted)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in src.namelist():
            zf.writestr(name, src.read(name))
        header = io.BytesIO()
        size = 256 * 2**20  # 256 MiB of zeros packs into about 256 KiB
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f8", "fortran_order": False, "shape": (size // 8,)})
        with zf.open("bomb.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            chunk = bytes(2**20)
            for _ in range(size // len(chunk)):
                member.write(chunk)
    bomb = out.getvalue()
    assert len(bomb) < 2 * 2**20
    digest = forge(store, model=bomb)
    tracemalloc.start()
    try:
        refused(store, digest, "unpack to .*a zip bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20  # refused from the zip directory, nothing unpacked


def test_a_zip_with_too_many_members_is_refused(store, fitted, monkeypatch):
    import skops.io as sio

    from shipyard.train import _artifacts

    monkeypatch.setattr(_artifacts, "MAX_SKOPS_MEMBERS", 10)
    extra = {f"{i:06d}.npy": npy(np.zeros(1)) for i in range(20)}
    blob = rewrite_skops(sio.dumps(fitted), members=extra)
    refused(store, forge(store, model=blob), "members, more than the 10")


# ---------------------------------------------------------- forged trees
def tree_edit(model_blob: bytes, edit) -> bytes:
    """The blob with its (first) decision tree's node array and counts
    passed through ``edit(nodes, counts)``."""
    tree = json.loads(zipfile.ZipFile(io.BytesIO(model_blob)).read("schema.json"))
    node = next(n for n in nodes(tree) if n["__loader__"] == "TreeNode")
    state = node["content"]["content"]
    array_file = state["nodes"]["file"]
    with zipfile.ZipFile(io.BytesIO(model_blob)) as zf:
        array = np.load(io.BytesIO(zf.read(array_file)))
    counts = {"max_depth": json.loads(state["max_depth"]["content"])}
    edit(array, counts)

    def patch(schema):
        target = next(n for n in nodes(schema) if n["__loader__"] == "TreeNode")
        depth = target["content"]["content"]["max_depth"]
        # skops shares equal values by id: give the forged one its own
        depth["content"], depth["__id__"] = json.dumps(counts["max_depth"]), 10**9

    return rewrite_skops(model_blob, patch, {array_file: npy(array)})


def _first_inner(nodes_):
    return int(np.flatnonzero(nodes_["left_child"] != -1)[1])


@pytest.mark.parametrize("edit, problem", [
    (lambda a, c: a["left_child"].__setitem__(0, 10**6), "child outside the tree"),
    (lambda a, c: a["right_child"].__setitem__(_first_inner(a), 0), "before its parent"),
    (lambda a, c: a["feature"].__setitem__(0, 10**6), "feature outside"),
    (lambda a, c: c.__setitem__("max_depth", 1), "records depth 1"),  # decision_path overflows
])
def test_forged_decision_trees_are_refused_before_prediction(store, classification, edit,
                                                             problem):
    """Compiled code walks these arrays without bounds checks: a forged tree
    would read out of bounds, loop forever or overflow at predict time."""
    X, y = classification
    good = save_model(DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y), store)
    blob = tree_edit(store.get_bytes(good.parts["model"]), edit)
    refused(store, forge(store, model=blob), f"a decision tree in it .*{problem}")


def test_tree_states_that_crash_scikit_learn_while_loading_are_refused(store,
                                                                      classification):
    """``Tree.__setstate__`` reads the node array's length in C before
    checking its rank: a 0-d array there segfaults the loading process. It
    can be put there directly, or by id: skops builds the first state
    carrying an id and reuses it for every later state with that id, so a
    well-formed tree state can be swapped for a scalar met earlier."""
    import skops.io as sio

    X, y = classification
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    blob = store.get_bytes(save_model(model, store).parts["model"])
    tree = next(n for n in nodes(json.loads(zipfile.ZipFile(io.BytesIO(blob))
                                            .read("schema.json")))
                if n["__loader__"] == "TreeNode")
    direct = rewrite_skops(blob, members={tree["content"]["content"]["nodes"]["file"]:
                                          npy(np.array(9))})
    model.__dict__ = {"aaa_": np.int64(9), **model.__dict__}  # serialized before tree_

    def alias(schema):
        scalar = schema["content"]["content"]["aaa_"]
        tree = next(n for n in nodes(schema) if n["__loader__"] == "TreeNode")
        tree["content"]["content"]["nodes"]["__id__"] = scalar["__id__"]

    by_id = rewrite_skops(sio.dumps(model), alias)
    outcome = outcomes_in_child(store, {"direct": forge(store, model=direct),
                                        "by id": forge(store, model=by_id)})
    assert outcome["direct"].startswith("refused: ") and "malformed state" in outcome["direct"]
    assert outcome["by id"].startswith("refused: ") and "gives the id" in outcome["by id"]


# --------------------------------------------------------- torch weights
def safetensors_variants(weights: bytes) -> dict[str, bytes]:
    (length,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8:8 + length])
    name = next(k for k in header if k != "__metadata__")

    def with_header(h: dict) -> bytes:
        text = json.dumps(h).encode()
        return struct.pack("<Q", len(text)) + text + weights[8 + length:]

    return {
        "header length past the end": struct.pack("<Q", 2**62) + weights[8:],
        "header not JSON": struct.pack("<Q", 9) + b"{not json" + weights[8 + length:],
        "offsets past the end": with_header(
            {**header, name: {**header[name], "data_offsets": [0, 2**40]}}),
        "shape larger than its data": with_header(
            {**header, name: {**header[name], "shape": [2**20, 2**20]}}),
        "unknown dtype": with_header({**header, name: {**header[name], "dtype": "Q99"}}),
        "truncated": weights[:len(weights) // 2],
        "empty": b"",
    }


def test_corrupted_safetensors_weights_are_refused(other_formats):
    store, _, torch = other_formats
    weights = store.get_bytes(torch.parts["weights"])
    for label, forged in safetensors_variants(weights).items():
        digest = forge(store, "torch", **{**torch.parts, "weights": forged})
        with pytest.raises(ArtifactError, match="cannot rebuild the torch model"):
            load_model(store, digest)
        assert label


def test_a_torch_config_cannot_size_a_network_bigger_than_its_weights(other_formats):
    store, _, torch = other_formats
    config = json.loads(store.get_bytes(torch.parts["config"]))
    config["params"]["hidden_sizes"] = [20_000, 20_000]  # 1.6 GB of float32, if built
    digest = forge(store, "torch", **{**torch.parts, "config": canonical_json(config)})
    refused(store, digest, r"config describes \d+ weights, the blob holds \d+")


# ------------------------------------------------------------ LightGBM
def with_tree(text: str, index: int, edit) -> str:
    """``text`` with tree ``index``'s block passed through ``edit`` and
    ``tree_sizes`` made to match, so only the edit is wrong."""
    sizes = [int(s) for s in re.search(r"^tree_sizes=(.*)$", text, re.MULTILINE)[1].split()]
    start = text.index("\nTree=0\n") + 1
    blocks, pos = [], start
    for size in sizes:
        blocks.append(text[pos:pos + size])
        pos += size
    blocks[index] = edit(blocks[index])
    head = re.sub(r"^tree_sizes=.*$", "tree_sizes=" + " ".join(
        str(len(b.encode())) for b in blocks), text[:start], flags=re.MULTILINE)
    return head + "".join(blocks) + text[pos:]


def lightgbm_variants(text: str) -> dict[str, bytes]:
    def field(name, value):
        return lambda block: re.sub(rf"^{name}=.*$", f"{name}={value}", block, flags=re.MULTILINE)

    first = re.search(r"^left_child=(.*)$", text, re.MULTILINE)[1].split()
    return {k: v.encode("latin-1") if isinstance(v, str) else v for k, v in {
        "random text": "".join(chr(c) for c in np.random.default_rng(0).integers(32, 127, 4096)),
        "not UTF-8": b"tree\n\xff\xfe\x00" + bytes(range(256)),
        "a pickle": pickle.dumps({"tree": 1}, protocol=0),
        "cut at 30%": text[:int(len(text) * 0.3)],
        "cut at 60%": text[:int(len(text) * 0.6)],
        "cut in its parameters": text[:text.index("end of parameters")],
        "child out of range": with_tree(text, 0, field(
            "left_child", " ".join(["1000000", *first[1:]]))),
        "child before its parent": with_tree(text, 0, field(
            "left_child", " ".join([*first[:-1], "0"]))),
        "feature out of range": with_tree(text, 0, field(
            "split_feature", " ".join(["99"] * len(first)))),
        "short array": with_tree(text, 0, field("leaf_value", "0.5")),
        "line without =": with_tree(text, 0, lambda b: b.replace("shrinkage=", "shrinkage ")),
        "leaves inflated": with_tree(text, 0, field("num_leaves", "400000")),
        "tree sizes too long": re.sub(r"^tree_sizes=(\d+)",
                                      lambda m: f"tree_sizes={int(m[1]) + 999}", text,
                                      flags=re.MULTILINE),
        "no trees an iteration": text.replace("num_tree_per_iteration=1",
                                              "num_tree_per_iteration=0"),
        "classes unlike its objective": text.replace("objective=binary sigmoid:1",
                                                     "objective=multiclass num_class:7"),
    }.items()}


def test_garbage_lightgbm_text_is_refused_without_crashing(other_formats, classification,
                                                          sentinel):
    """LightGBM's parser aborts or segfaults on some of these, so they are
    loaded in a child process: a crash fails this test, not the test run."""
    import lightgbm

    store, lgbm, _ = other_formats
    text = store.get_bytes(lgbm.parts["booster"]).decode()
    digests = {label: forge(store, "lightgbm", **{**lgbm.parts, "booster": forged})
               for label, forged in lightgbm_variants(text).items()}
    X, _ = classification
    linear = save_model(lightgbm.LGBMRegressor(n_estimators=2, num_leaves=3, linear_tree=True,
                                               verbose=-1).fit(X, X["x0"]), store)
    overflow = with_tree(store.get_bytes(linear.parts["booster"]).decode(), 0, lambda b: re.sub(
        r"^leaf_const=\S+", "leaf_const=1e400", b, flags=re.MULTILINE))  # std::stod throws
    digests["linear leaf beyond a double"] = forge(store, "lightgbm",
                                                   **{**linear.parts, "booster": overflow.encode()})
    outcomes = outcomes_in_child(store, digests)
    not_refused = {k: v for k, v in outcomes.items() if not v.startswith("refused: ")}
    assert not not_refused
    assert sentinel.untouched()


def test_the_unaltered_lightgbm_text_still_loads(other_formats, classification):
    store, lgbm, _ = other_formats
    X, _ = classification
    assert load_model(store, lgbm.digest).predict_proba(X).shape == (len(X), 2)
