// One run: overview and provenance, params, diff, charts, media, text, markdown, tables,
// histograms, console, files, section timings.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  fetchConsole, fetchFiles, fetchFileText, fetchHistograms, fetchMedia, fetchRun, fetchText, FileEntry, fileUrl,
  HistogramRecord, Json, MediaEntry, MetaResult, Named, NamedKind, RunDetail, TextRecord,
} from "./api";
import { ChartControls, ChartGrid, runMetrics, sortMetrics } from "./charts";
import { chartSettingsFrom, chartSettingsTo, toggleWide } from "./dashboard";
import { LoggedTable, SteppedTable } from "./datatable";
import { CommentAndTags, Notes } from "./edit";
import { durationOf, fmtBytes, fmtCheckpoints, fmtDate, fmtDuration, fmtNumber, fmtStep, fmtValue } from "./format";
import { directionOf, DirectionMark, directionTitle } from "./directions";
import { HistogramView } from "./histogram";
import { useLive, useWatch } from "./live";
import { AudioSeries, HtmlSeries, ImageSeries, RemoteMarkdown, SteppedMarkdown, TextSeries, VideoSeries } from "./media";
import { Route, updateParams } from "./route";
import { ErrorLine, Section, StatusBadge, Tags } from "./widgets";

const TABS = ["overview", "charts", "images", "text", "markdown", "tables", "histograms", "console", "files"] as const;
// The "images" tab (its URL key kept) holds every visual and audible record: images, video, audio, HTML.
const TAB_LABELS: Partial<Record<string, string>> = { images: "media" };
type Tab = (typeof TABS)[number];

/** The run's names of one kind, each with the path the server stores it at. */
function named(run: RunDetail | null, kind: NamedKind): Named[] {
  return run?.named?.[kind] ?? [];
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) {
    const k = key(it);
    const list = m.get(k);
    if (list) list.push(it);
    else m.set(k, [it]);
  }
  return m;
}

export function RunPage({ id, route }: { id: string; route: Route }) {
  const tab = (TABS as readonly string[]).includes(route.params.get("tab") ?? "") ? (route.params.get("tab") as Tab) : "overview";
  const [run, setRun] = useState<RunDetail | null>(null);
  const [files, setFiles] = useState<FileEntry[]>([]);
  const [media, setMedia] = useState<MediaEntry[]>([]);
  const [error, setError] = useState<unknown>(null);
  useWatch([id]);
  useEffect(() => {
    setRun(null);
    setError(null);
    fetchRun(id).then(setRun).catch(setError);
    fetchFiles(id).then(setFiles).catch(() => setFiles([]));
    fetchMedia(id).then(setMedia).catch(() => setMedia([]));
  }, [id]);
  useLive(
    "run",
    (row) => {
      if (row.id !== id) return;
      setRun((old) => (old ? { ...old, status: row.status, ended: row.ended, name: row.name, comment: row.comment, tags: row.tags } : old));
    },
    [id],
  );
  // Media and files of a running run grow: look again now and then.
  useEffect(() => {
    if (run?.status !== "running") return;
    const t = window.setInterval(() => {
      fetchRun(id).then(setRun).catch(() => undefined);
      fetchFiles(id).then(setFiles).catch(() => undefined);
      fetchMedia(id).then(setMedia).catch(() => undefined);
    }, 5000);
    return () => window.clearInterval(t);
  }, [id, run?.status]);

  const images = useMemo(() => groupBy(media.filter((m) => ["image", "figure", "animation"].includes(m.kind)), (m) => m.name), [media]);
  const audios = useMemo(() => groupBy(media.filter((m) => m.kind === "audio"), (m) => m.name), [media]);
  const videos = useMemo(() => groupBy(media.filter((m) => m.kind === "video"), (m) => m.name), [media]);
  const htmls = useMemo(() => groupBy(media.filter((m) => m.kind === "html"), (m) => m.name), [media]);
  const steppedMd = useMemo(() => groupBy(media.filter((m) => m.kind === "markdown"), (m) => m.name), [media]);
  const steppedTables = useMemo(() => groupBy(media.filter((m) => m.kind === "table"), (m) => m.name), [media]);
  const texts = named(run, "text");
  const hists = named(run, "histograms");
  const mds = named(run, "markdown");
  const tables = named(run, "tables");
  const counts: Record<Tab, number | null> = {
    overview: null,
    charts: run ? sortMetrics(runMetrics(run)).length : 0,
    images: images.size + audios.size + videos.size + htmls.size,
    text: texts.length,
    markdown: mds.length + steppedMd.size,
    tables: tables.length + [...steppedTables.keys()].filter((k) => !tables.some((t) => t.name === k)).length,
    histograms: hists.length,
    console: null,
    files: files.filter((f) => f.path.startsWith("artifacts/") || f.path.startsWith("checkpoints/")).length,
  };

  if (error) return <div class="page"><ErrorLine error={error} /></div>;
  if (!run) return <div class="page muted">loading…</div>;
  const onSaved = (r: MetaResult) => setRun((old) => (old ? { ...old, comment: r.comment, tags: r.tags, notes: r.notes } : old));
  return (
    <div class="page run-page" data-testid="run-page">
      <div class="run-title">
        <StatusBadge status={run.status} />
        <h1>{run.name || run.id}</h1>
        <span class="muted mono">{run.experiment} / {run.id}</span>
        <Tags tags={run.tags} />
        <JobInfo run={run} />
      </div>
      <CommentAndTags run={run} onSaved={onSaved} />
      <nav class="tabs">
        {TABS.map((t) => (
          <a
            key={t}
            href={`#/run/${encodeURIComponent(id)}?tab=${t}`}
            class={`tab${t === tab ? " active" : ""}${counts[t] === 0 ? " empty-tab" : ""}`}
            data-testid={`tab-${t}`}
          >
            {TAB_LABELS[t] ?? t}
            {counts[t] ? <span class="count">{counts[t]}</span> : null}
          </a>
        ))}
      </nav>
      {tab === "overview" && <Overview run={run} files={files} onSaved={onSaved} />}
      {tab === "charts" && <RunCharts run={run} route={route} />}
      {tab === "images" && (
        <div class="media-grid">
          {[...images].map(([name, entries]) => <ImageSeries key={name} runId={id} name={name} entries={entries} />)}
          {[...videos].map(([name, entries]) => <VideoSeries key={"v" + name} runId={id} name={name} entries={entries} />)}
          {[...audios].map(([name, entries]) => <AudioSeries key={"a" + name} runId={id} name={name} entries={entries} />)}
          {[...htmls].map(([name, entries]) => <HtmlSeries key={"h" + name} runId={id} name={name} entries={entries} />)}
          {!counts.images && <div class="empty">No images, audio or video logged.</div>}
        </div>
      )}
      {tab === "text" && (
        <div>
          {texts.map((t) => <TextLoader key={t.path} runId={id} name={t.name} path={t.path} />)}
          {!texts.length && <div class="empty">No text logged.</div>}
        </div>
      )}
      {tab === "markdown" && (
        <div>
          {mds.map((m) => (
            <div class="media-card wide" key={m.path} data-name={m.name}>
              <h3>{m.name}</h3>
              <RemoteMarkdown runId={id} path={m.path} />
            </div>
          ))}
          {[...steppedMd].map(([name, entries]) => <SteppedMarkdown key={"s" + name} runId={id} name={name} entries={entries} />)}
          {!mds.length && !steppedMd.size && <div class="empty">No markdown logged.</div>}
        </div>
      )}
      {tab === "tables" && (
        <div>
          {tables.map((m) => (
            <div class="media-card wide" key={m.path} data-name={m.name}>
              <h3>{m.name}</h3>
              <LoggedTable runId={id} path={m.path} name={m.name} />
            </div>
          ))}
          {[...steppedTables].filter(([name]) => !tables.some((t) => t.name === name)).map(([name, entries]) => (
            <SteppedTable key={"s" + name} runId={id} name={name} entries={entries} />
          ))}
          {!counts.tables && <div class="empty">No tables logged.</div>}
        </div>
      )}
      {tab === "histograms" && (
        <div>
          {hists.map((h) => <HistLoader key={h.path} runId={id} name={h.name} path={h.path} />)}
          {!hists.length && <div class="empty">No histograms logged.</div>}
        </div>
      )}
      {tab === "console" && <RankConsoles run={run} />}
      {tab === "files" && <Files runId={id} run={run} files={files} />}
    </div>
  );
}

function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

function Overview({ run, files, onSaved }: { run: RunDetail; files: FileEntry[]; onSaved: (r: MetaResult) => void }) {
  const [diffText, setDiff] = useState<string | null>(null);
  const hasDiff = files.some((f) => f.path === "source/diff.patch" && f.size > 0);
  useEffect(() => {
    if (hasDiff) fetchFileText(run.id, "source/diff.patch").then(setDiff).catch(() => setDiff(null));
  }, [run.id, hasDiff]);
  const g = run.git;
  const env = run.env;
  const rows: [string, preact.ComponentChildren][] = [
    ["status", <StatusBadge status={run.status} />],
    ["experiment", run.experiment],
    ["group", run.group],
    ["job type", run.job_type],
    ["started", fmtDate(run.started)],
    ["ended", fmtDate(run.ended)],
    ["duration", fmtDuration(durationOf(run.started, run.ended, run.duration ?? null, run.status === "running"))],
    ["command", run.command?.argv ? <code>{["python", ...run.command.argv].map(shellQuote).join(" ")}</code> : null],
    ["directory", run.command?.cwd ? <code>{run.command.cwd}</code> : null],
    ["commit", g?.commit ? <span><code>{g.commit}</code>{g.dirty ? <span class="dirty" title="uncommitted changes"> * dirty</span> : <span class="muted"> clean</span>}{g.message ? <span class="muted"> — {g.message.split("\n")[0]}</span> : null}</span> : null],
    ["branch", g?.branch],
    ["remote", g?.remote],
    ["host", run.host ?? env?.host],
    ["user", run.user],
    ["pid", run.pid],
    ["python", env?.python ? `${env.python.implementation ?? ""} ${env.python.version ?? ""}`.trim() : run.command?.python],
    ["platform", env?.platform ? `${env.platform.system ?? ""} ${env.platform.release ?? ""} ${env.platform.machine ?? ""}` : null],
    ["GPUs", env?.gpus?.length ? env.gpus.map((x) => x.name).join(", ") : null],
    ["seed", run.seed === null || run.seed === undefined ? null : String(run.seed)],
    ["parent", run.parent ? <a href={`#/run/${encodeURIComponent(run.parent)}`}>{run.parent}</a> : null],
    ["checkpoints", run.checkpoints && (run.checkpoints.last !== null || run.checkpoints.best !== null) ? <span data-testid="checkpoints">{fmtCheckpoints(run.checkpoints)}</span> : null],
  ];
  const timings = Object.entries(run.summary).filter(([k]) => k.startsWith("timings/"));
  const packages = Object.entries(env?.packages ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return (
    <div class="overview">
      <div class="overview-cols">
        <Section title="Provenance">
          <dl class="props" data-testid="provenance">
            {rows.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => (
              <>
                <dt key={k + "t"}>{k}</dt>
                <dd key={k + "d"}>{v}</dd>
              </>
            ))}
          </dl>
          {run.error && (
            <div class="run-error">
              <strong>{run.error.type}: {run.error.message}</strong>
              {run.error.traceback && <pre>{run.error.traceback}</pre>}
            </div>
          )}
        </Section>
        <Section title="Params">
          {Object.keys(run.params).length ? <ParamTree value={run.params} /> : <div class="muted">no params</div>}
        </Section>
      </div>
      <Section title="Notes">
        <Notes run={run} onSaved={onSaved} />
      </Section>
      {timings.length > 0 && (
        <Section title="Section timings">
          <Timings entries={timings} />
        </Section>
      )}
      <Section title="Summary">
        <table class="data-table compact">
          <thead><tr><th>series</th><th>last</th><th>best</th><th>min</th><th>max</th><th>mean</th><th>points</th><th>last step</th></tr></thead>
          <tbody>
            {Object.entries(run.summary).map(([k, s]) => {
              const dir = directionOf(k, [run]); // null: a machine series, no "best"
              // a value the script set (run.summary["best"] = 0.9) may have no points behind it
              const points = !Number.isNaN(s.count);
              const shown = (v: number | undefined) => (points ? fmtNumber(v) : "");
              const last = s.value === undefined || s.value === null ? shown(s.last)
                : typeof s.value === "number" ? fmtNumber(s.value) : String(s.value);
              return (
                <tr key={k} data-series={k}>
                  <td>{k}</td><td class="num">{last}</td>
                  <td class="num" data-testid="summary-best" title={points && dir ? directionTitle(k, dir) : undefined}>
                    {points && dir && <>{shown(dir.dir === "min" ? s.min : s.max)} <DirectionMark metric={k} d={dir} /></>}
                  </td>
                  <td class="num">{shown(s.min)}</td><td class="num">{shown(s.max)}</td><td class="num">{shown(s.mean)}</td><td class="num">{points ? fmtStep(s.count) : ""}</td><td class="num">{points ? fmtStep(s.step) : ""}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </Section>
      {hasDiff && (
        <Section title="Uncommitted changes (git diff HEAD)">
          {diffText === null ? <div class="muted">loading…</div> : <DiffView text={diffText} />}
        </Section>
      )}
      {packages.length > 0 && (
        <Section title={`Packages (${packages.length})`}>
          <details>
            <summary>show</summary>
            <div class="packages mono">
              {packages.map(([k, v]) => <span key={k}>{k}=={v}</span>)}
            </div>
          </details>
        </Section>
      )}
    </div>
  );
}

export function DiffView({ text }: { text: string }) {
  const lines = text.split("\n").slice(0, 20000);
  return (
    <pre class="diff" data-testid="git-diff">
      {lines.map((l, i) => {
        const cls = l.startsWith("+++") || l.startsWith("---") ? "d-file"
          : l.startsWith("diff ") || l.startsWith("index ") ? "d-meta"
          : l.startsWith("@@") ? "d-hunk"
          : l.startsWith("+") ? "d-add"
          : l.startsWith("-") ? "d-del" : "d-ctx";
        return <div key={i} class={cls}>{l || " "}</div>;
      })}
    </pre>
  );
}

function isObj(v: Json): v is { [k: string]: Json } {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Flat dotted keys (as the index gives them) back into a tree. */
export function unflatten(p: Record<string, Json>): Record<string, Json> {
  if (Object.values(p).some(isObj)) return p;
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(p)) {
    const parts = k.split(".");
    let node = out;
    for (const part of parts.slice(0, -1)) {
      if (!isObj(node[part])) node[part] = {};
      node = node[part] as Record<string, Json>;
    }
    node[parts[parts.length - 1]] = v;
  }
  return out;
}

export function ParamTree({ value }: { value: Record<string, Json> }) {
  const tree = unflatten(value);
  return <ul class="tree" data-testid="param-tree">{Object.entries(tree).map(([k, v]) => <TreeNode key={k} k={k} v={v} />)}</ul>;
}

function TreeNode({ k, v }: { k: string; v: Json }) {
  if (isObj(v) || (Array.isArray(v) && v.some((x) => typeof x === "object" && x !== null))) {
    const entries = Array.isArray(v) ? v.map((x, i) => [String(i), x] as const) : Object.entries(v);
    return (
      <li>
        <details open>
          <summary><span class="tree-key">{k}</span></summary>
          <ul class="tree">{entries.map(([ck, cv]) => <TreeNode key={ck} k={ck} v={cv} />)}</ul>
        </details>
      </li>
    );
  }
  return (
    <li class="leaf">
      <span class="tree-key">{k}</span>
      <span class={`tree-val t-${typeof v}`}>{typeof v === "string" ? JSON.stringify(v) : fmtValue(v)}</span>
    </li>
  );
}

function Timings({ entries }: { entries: [string, { sum?: number; mean?: number; count: number; last: number }][] }) {
  const total = entries.reduce((a, [, s]) => a + (Number.isFinite(s.sum!) ? s.sum! : 0), 0);
  const peak = Math.max(...entries.map(([, s]) => (Number.isFinite(s.sum!) ? s.sum! : 0)), 1e-12);
  return (
    <table class="data-table compact timings" data-testid="timings">
      <thead><tr><th>section</th><th>total</th><th /><th>share</th><th>mean</th><th>count</th></tr></thead>
      <tbody>
        {entries.map(([k, s]) => (
          <tr key={k}>
            <td>{k.slice("timings/".length)}</td>
            <td class="num">{fmtNumber(s.sum ?? NaN)} s</td>
            <td class="bar-cell"><span class="bar" style={{ width: `${Math.max(1, ((s.sum ?? 0) / peak) * 100)}%` }} /></td>
            <td class="num">{total > 0 && s.sum !== undefined ? `${((s.sum / total) * 100).toFixed(1)}%` : ""}</td>
            <td class="num">{fmtNumber(s.mean ?? NaN)} s</td>
            <td class="num">{s.count}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function RunCharts({ run, route }: { run: RunDetail; route: Route }) {
  const settings = chartSettingsFrom(route.params);
  // A running run's new series are in `names` before summary.json lists them.
  const available = sortMetrics(runMetrics(run));
  const shown = settings.metrics.length ? settings.metrics.filter((m) => available.includes(m)) : available;
  return (
    <div>
      <ChartControls settings={settings} available={available} onChange={(s) => updateParams(chartSettingsTo(s))} />
      <ChartGrid
        runs={[{ id: run.id, label: run.name || run.id, color: "#1f77b4" }]}
        metrics={shown}
        settings={settings}
        has={(_id, m) => available.includes(m)}
        onWide={(m) => updateParams(toggleWide(settings, m))}
      />
    </div>
  );
}

function TextLoader({ runId, name, path }: { runId: string; name: string; path: string }) {
  const [recs, setRecs] = useState<TextRecord[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  useEffect(() => {
    fetchText(runId, path).then(setRecs).catch(setErr);
  }, [runId, path]);
  if (err) return <ErrorLine error={err} />;
  return recs ? <TextSeries name={name} records={recs} /> : <div class="muted">loading…</div>;
}

function HistLoader({ runId, name, path }: { runId: string; name: string; path: string }) {
  const [recs, setRecs] = useState<HistogramRecord[] | null>(null);
  const [err, setErr] = useState<unknown>(null);
  useEffect(() => {
    fetchHistograms(runId, path).then(setRecs).catch(setErr);
  }, [runId, path]);
  if (err) return <ErrorLine error={err} />;
  return recs ? <HistogramView name={name} records={recs} /> : <div class="muted">loading…</div>;
}

/** The run's place in a distributed job (docs/distributed.md): mode, world size, each rank's state. */
function JobInfo({ run }: { run: RunDetail }) {
  const d = run.distributed;
  if (!d || !d.world_size || d.world_size < 2) return null;
  const title = `${d.launcher ?? "launcher"} job ${d.job_id ?? "(no id)"}${run.group ? `, group ${run.group}` : ""}`;
  return (
    <span class="job-info" data-testid="run-job" title={title}>
      {d.mode === "one-run" ? (
        <>
          <span class="muted">{d.world_size} ranks, one run</span>
          {(run.ranks ?? []).map((r) => (
            <span class="rank-state" key={r.rank} data-rank={r.rank} title={r.host ? `${r.host} pid ${r.pid ?? "?"}` : undefined}>
              rank {r.rank} <StatusBadge status={r.status} />
            </span>
          ))}
        </>
      ) : (
        <span class="muted">rank {d.rank} of {d.world_size} ({d.mode}){run.group ? ` · group ${run.group}` : ""}</span>
      )}
    </span>
  );
}

/** The console, with a choice of rank in a one-run distributed job. */
function RankConsoles({ run }: { run: RunDetail }) {
  const consoles = run.consoles?.length ? run.consoles : [{ rank: 0, path: "console.log" }];
  const [rank, setRank] = useState(consoles[0].rank);
  const current = consoles.find((c) => c.rank === rank) ?? consoles[0];
  return (
    <div>
      {consoles.length > 1 && (
        <div class="rank-pick" data-testid="console-ranks">
          {consoles.map((c) => (
            <button key={c.rank} class={c.rank === current.rank ? "active" : ""} onClick={() => setRank(c.rank)}>
              rank {c.rank}
            </button>
          ))}
        </div>
      )}
      <ConsoleLog key={current.rank} runId={run.id} rank={current.rank} path={current.path} running={run.status === "running"} />
    </div>
  );
}

const CONSOLE_TAIL = 1 << 20;

function ConsoleLog({ runId, running, rank = 0, path = "console.log" }: { runId: string; running: boolean; rank?: number; path?: string }) {
  const [text, setText] = useState("");
  const [cut, setCut] = useState(false);
  const offset = useRef(0);
  const pre = useRef<HTMLPreElement>(null);
  const [follow, setFollow] = useState(true);
  const readFrom = async (from: number) => {
    let r = await fetchConsole(runId, from, rank);
    let acc = r.text;
    // Keep reading while the server has more (1 MiB per answer).
    for (let i = 0; i < 8 && r.size !== undefined && r.offset < r.size; i++) {
      r = await fetchConsole(runId, r.offset, rank);
      acc += r.text;
    }
    return { text: acc, offset: r.offset };
  };
  useEffect(() => {
    let alive = true;
    offset.current = 0;
    setText("");
    setCut(false);
    (async () => {
      const head = await fetchConsole(runId, 0, rank);
      // A huge log: show its last MiB.
      const big = head.size !== undefined && head.size > CONSOLE_TAIL * 2;
      const r = big ? await readFrom(head.size! - CONSOLE_TAIL) : await readFrom(0);
      if (!alive) return;
      setCut(big);
      offset.current = r.offset;
      setText(r.text);
    })().catch(() => undefined);
    return () => {
      alive = false;
    };
  }, [runId]);
  useEffect(() => {
    // The live stream carries rank 0's console; another rank's is polled while the run runs.
    if (!rank || !running) return;
    const t = setInterval(() => {
      readFrom(offset.current)
        .then((r) => {
          if (r.offset > offset.current) {
            offset.current = r.offset;
            setText((x) => x + r.text);
          }
        })
        .catch(() => undefined);
    }, 2000);
    return () => clearInterval(t);
  }, [runId, rank, running]);
  useLive(
    "console",
    (e) => {
      if (rank || e.run !== runId || e.offset <= offset.current) return;
      const start = Number.isFinite(e.start) ? e.start : e.offset - new TextEncoder().encode(e.text).length;
      if (start > offset.current) {
        // A gap (the stream opened after our read): read what is missing.
        readFrom(offset.current)
          .then((r) => {
            if (r.offset > offset.current) {
              offset.current = r.offset;
              setText((t) => t + r.text);
            }
          })
          .catch(() => undefined);
        return;
      }
      const bytes = new TextEncoder().encode(e.text);
      const fresh = start === offset.current ? e.text : new TextDecoder().decode(bytes.slice(offset.current - start));
      offset.current = e.offset;
      setText((t) => t + fresh);
    },
    [runId],
  );
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);
  return (
    <div>
      <div class="console-head">
        {running && <span class="live-note"><span class="dot live" /> live</span>}
        <label><input type="checkbox" checked={follow} onChange={(e) => setFollow((e.target as HTMLInputElement).checked)} /> follow</label>
        <a href={fileUrl(runId, path) + "&download=1"} download={rank ? `console-rank${rank}.log` : "console.log"}>download</a>
        {cut && <span class="muted">showing the last MiB</span>}
      </div>
      <pre class="console" ref={pre} data-testid="console">{text || "(nothing printed)"}</pre>
    </div>
  );
}

function Files({ runId, run, files }: { runId: string; run: RunDetail; files: FileEntry[] }) {
  const art = files.filter((f) => f.path.startsWith("artifacts/"));
  const ck = files.filter((f) => f.path.startsWith("checkpoints/"));
  const other = files.filter((f) => !f.path.startsWith("artifacts/") && !f.path.startsWith("checkpoints/"));
  const list = (fs: FileEntry[]) => (
    <table class="data-table compact files">
      <tbody>
        {fs.map((f) => (
          <tr key={f.path}>
            <td><a href={fileUrl(runId, f.path) + "&download=1"} download={f.path.split("/").pop()}>{f.path}</a></td>
            <td class="num">{fmtBytes(f.size)}</td>
            <td class="mono muted">{fmtDate(new Date(f.mtime * 1000).toISOString())}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
  return (
    <div>
      <Section title="Artifacts">{art.length ? list(art) : <div class="muted">none</div>}</Section>
      <Section title="Checkpoints">
        {run.checkpoints && (run.checkpoints.last !== null || run.checkpoints.best !== null) && (
          <div class="muted">{fmtCheckpoints(run.checkpoints)}</div>
        )}
        {ck.length ? list(ck) : <div class="muted">none</div>}
      </Section>
      <Section title="All files">{list(other)}</Section>
    </div>
  );
}
