// The runs table: server-sorted, server-filtered, paged and virtualised, so 10,000 runs scroll smoothly.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError, fetchRuns, RunRow } from "./api";
import { durationOf, fmtDate, fmtDuration, fmtValue } from "./format";
import { useLive, useWatch } from "./live";
import { StatusBadge, Tags } from "./widgets";

const ROW_H = 30;
const PAGE = 100;

export interface TableState {
  q: string;
  where: string;
  sort: string;
  cols: string[];
  group: string;
  sel: string[];
}

interface Col {
  key: string; // sort key sent to the server
  title: string;
  width: string;
  cell: (r: RunRow, now: number) => preact.ComponentChildren;
}

const BASE_COLS: Col[] = [
  { key: "status", title: "status", width: "104px", cell: (r) => <StatusBadge status={r.status} /> },
  { key: "experiment", title: "experiment", width: "minmax(90px,1fr)", cell: (r) => <span class="ellipsis">{r.experiment}</span> },
  {
    key: "name", title: "name", width: "minmax(110px,1.2fr)",
    cell: (r) => (
      <a class="ellipsis run-link" href={`#/run/${encodeURIComponent(r.id)}`} title={r.id} onClick={(e) => e.stopPropagation()}>
        {r.name || r.id}
      </a>
    ),
  },
  { key: "comment", title: "comment", width: "minmax(90px,1.4fr)", cell: (r) => <span class="ellipsis muted-text" title={r.comment ?? ""}>{r.comment}</span> },
  { key: "tags", title: "tags", width: "minmax(70px,1fr)", cell: (r) => <Tags tags={r.tags} /> },
  { key: "started", title: "started", width: "150px", cell: (r) => <span class="mono">{fmtDate(r.started)}</span> },
  {
    key: "duration", title: "duration", width: "82px",
    cell: (r, now) => <span class="mono">{fmtDuration(durationOf(r.started, r.ended, r.duration, r.status === "running", now))}</span>,
  },
  {
    key: "commit", title: "commit", width: "84px",
    cell: (r) =>
      r.commit ? (
        <span class="mono" title={r.dirty ? "uncommitted changes when the run started" : "clean"}>
          {r.commit.slice(0, 7)}
          {r.dirty ? <span class="dirty">*</span> : null}
        </span>
      ) : null,
  },
];

// Shown only when a run on screen has one (runs.group, runs.job_type in run.json).
const GROUP_COLS: Col[] = [
  { key: "group", title: "group", width: "minmax(70px,0.8fr)", cell: (r) => <span class="ellipsis" title={r.group ?? ""}>{r.group}</span> },
  { key: "job_type", title: "job type", width: "minmax(60px,0.6fr)", cell: (r) => <span class="ellipsis">{r.job_type}</span> },
];

function userCol(c: string): Col {
  const [kind, ...rest] = c.split(".");
  const name = rest.join(".");
  return {
    key: c,
    title: name,
    width: "minmax(70px,0.8fr)",
    cell: (r) => {
      const v = kind === "params" ? r.params[name] : r.metrics[name];
      return <span class="mono num">{fmtValue(v)}</span>;
    },
  };
}

function minPx(width: string): number {
  const m = width.match(/(\d+)px/);
  return m ? Number(m[1]) : 60;
}

function groupValue(r: RunRow, group: string): string {
  if (!group) return "";
  if (group === "experiment") return r.experiment;
  if (group === "group" || group === "job_type") return r[group] ?? "—";
  if (group.startsWith("params.")) return fmtValue(r.params[group.slice(7)] ?? "—");
  return "";
}

export function RunsTable(props: {
  state: TableState;
  onState: (s: Partial<TableState>) => void;
}) {
  const { q, where, sort, cols, group, sel } = props.state;
  const [total, setTotal] = useState<number | null>(null);
  const [pages, setPages] = useState<Map<number, RunRow[]>>(new Map());
  const [error, setError] = useState<string | null>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewH, setViewH] = useState(400);
  const [now, setNow] = useState(Date.now());
  const [gen, setGen] = useState(0);
  const [pending, setPending] = useState(0);
  const loading = useRef(new Set<number>());
  const scroller = useRef<HTMLDivElement>(null);
  // Grouping sorts by the group first (the server sorts), so each group is one block of rows.
  const effSort = group ? group : sort;
  const queryKey = JSON.stringify([q, where, effSort, cols]);
  const keyRef = useRef(queryKey);

  useEffect(() => {
    keyRef.current = queryKey;
    loading.current.clear();
    setPages(new Map());
    setError(null);
    loadPage(0, queryKey);
  }, [queryKey]);

  const loadPage = useCallback(
    (p: number, k: string) => {
      if (loading.current.has(p)) return;
      loading.current.add(p);
      fetchRuns({ offset: p * PAGE, limit: PAGE, sort: effSort, q, where, columns: cols })
        .then((page) => {
          if (keyRef.current !== k) return;
          setTotal(page.total);
          setPending(page.pending ?? 0);
          setPages((old) => new Map(old).set(p, page.runs));
        })
        .catch((e) => {
          if (keyRef.current !== k) return;
          loading.current.delete(p);
          setError(e instanceof ApiError || e instanceof Error ? e.message : String(e));
          setTotal(0);
        });
    },
    [q, where, effSort, cols.join(",")],
  );

  const first = Math.max(0, Math.floor(scrollTop / ROW_H) - 10);
  const last = Math.min(total ?? 0, Math.ceil((scrollTop + viewH) / ROW_H) + 10);
  // A run appeared or vanished: fetch the pages in view again, keeping the old rows on screen
  // until the new ones arrive (no flicker).
  useEffect(() => {
    if (!gen) return;
    const k = keyRef.current;
    const visible = new Set<number>();
    for (let p = Math.floor(first / PAGE); p <= Math.floor(Math.max(first, last - 1) / PAGE); p++) visible.add(p);
    visible.add(0);
    for (const p of visible) {
      fetchRuns({ offset: p * PAGE, limit: PAGE, sort: effSort, q, where, columns: cols })
        .then((page) => {
          if (keyRef.current !== k) return;
          setTotal(page.total);
          setPending(page.pending ?? 0);
          setPages((old) => {
            const next = new Map<number, RunRow[]>();
            // Other pages may have shifted: drop them, they load again when scrolled to.
            for (const [i, rows] of old) if (visible.has(i)) next.set(i, rows);
            next.set(p, page.runs);
            return next;
          });
          for (const i of [...loading.current]) if (!visible.has(i)) loading.current.delete(i);
        })
        .catch(() => undefined);
    }
  }, [gen]);

  useEffect(() => {
    if (total === null) return;
    for (let p = Math.floor(first / PAGE); p <= Math.floor(Math.max(first, last - 1) / PAGE); p++) {
      if (!pages.has(p)) loadPage(p, queryKey);
    }
  }, [first, last, total, queryKey]);

  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setViewH(el.clientHeight));
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const rows: { i: number; r: RunRow | undefined }[] = [];
  for (let i = first; i < last; i++) rows.push({ i, r: pages.get(Math.floor(i / PAGE))?.[i % PAGE] });
  const rowAt = (i: number) => pages.get(Math.floor(i / PAGE))?.[i % PAGE];

  // Live: watch the running rows on screen; refresh when runs appear or vanish.
  const running = rows.filter((x) => x.r && x.r.status === "running").map((x) => x.r!.id);
  useWatch(running);
  useEffect(() => {
    if (!running.length) return;
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, [running.length > 0]);
  useLive(
    "run",
    (row) => {
      setPages((old) => {
        let changed = false;
        const next = new Map(old);
        for (const [p, list] of old) {
          const j = list.findIndex((x) => x.id === row.id);
          if (j >= 0) {
            const copy = list.slice();
            copy[j] = { ...list[j], ...row, params: { ...list[j].params, ...row.params }, metrics: { ...list[j].metrics, ...row.metrics } };
            next.set(p, copy);
            changed = true;
          }
        }
        return changed ? next : old;
      });
    },
    [],
  );
  // The server is still reading a never-indexed root: ask again until every run is in.
  useEffect(() => {
    if (!pending) return;
    const t = window.setTimeout(() => setGen((g) => g + 1), 1000);
    return () => window.clearTimeout(t);
  }, [pending, gen]);
  const refreshTimer = useRef<number>();
  useLive(
    "runs",
    () => {
      window.clearTimeout(refreshTimer.current);
      refreshTimer.current = window.setTimeout(() => setGen((g) => g + 1), 300);
    },
    [],
  );

  const loaded = [...pages.values()].flat();
  const shownGroupCols = GROUP_COLS.filter((c) => group === c.key || loaded.some((r) => r[c.key as "group" | "job_type"]));
  const allCols = [...BASE_COLS.slice(0, 3), ...shownGroupCols, ...BASE_COLS.slice(3), ...cols.map(userCol)];
  const template = [group ? "minmax(80px,0.8fr)" : null, "34px", ...allCols.map((c) => c.width)].filter(Boolean).join(" ");
  // Below this width the table scrolls sideways instead of squeezing columns to nothing.
  const minWidth = [group ? 80 : 0, 34, ...allCols.map((c) => minPx(c.width))].reduce((a, b) => a + b + 8, 32);
  const selSet = new Set(sel);
  const toggle = (id: string) => {
    props.onState({ sel: selSet.has(id) ? sel.filter((x) => x !== id) : [...sel, id] });
  };
  const sortBy = (key: string) => {
    props.onState({ sort: sort === key ? "-" + key : sort === "-" + key ? key : "-" + key, group: "" });
  };
  const arrow = (key: string) => (effSort === key ? " ▲" : effSort === "-" + key ? " ▼" : "");

  return (
    <div class="runs-table" data-testid="runs-table" style={{ height: `min(42vh, ${Math.max(5, total ?? 0) * ROW_H + 62}px)` }}>
      <div class="table-meta">
        <span data-testid="runs-total">{total === null ? "loading…" : `${total} run${total === 1 ? "" : "s"}${pending ? ` (reading ${pending} more…)` : ""}`}</span>
        {sel.length > 0 && <span> · {sel.length} selected</span>}
        {error && <span class="error" role="alert" data-testid="table-error"> {error}</span>}
      </div>
      <div class="grid-body" ref={scroller} onScroll={(e) => setScrollTop((e.target as HTMLDivElement).scrollTop)}>
      <div class="grid-head" style={{ gridTemplateColumns: template, minWidth: `${minWidth}px` }}>
        {group && <div class="th">group</div>}
        <div class="th" />
        {allCols.map((c) => (
          <div class={`th sortable${c.key.includes(".") ? " user-col" : ""}`} key={c.key} onClick={() => sortBy(c.key)} title={`sort by ${c.key}`}>
            {c.title}
            {arrow(c.key)}
          </div>
        ))}
      </div>
        <div style={{ height: `${(total ?? 0) * ROW_H}px`, position: "relative", minWidth: `${minWidth}px` }}>
          {rows.map(({ i, r }) => {
            const gv = r && group ? groupValue(r, group) : "";
            const prev = i > 0 ? rowAt(i - 1) : undefined;
            const groupStart = group && r && (i === 0 || (prev && groupValue(prev, group) !== gv));
            return (
              <div
                key={r ? r.id : `i${i}`}
                class={`grid-row${r && selSet.has(r.id) ? " selected" : ""}${groupStart ? " group-start" : ""}`}
                style={{ top: `${i * ROW_H}px`, height: `${ROW_H}px`, gridTemplateColumns: template }}
                data-run={r?.id}
                onClick={() => r && toggle(r.id)}
              >
                {r ? (
                  <>
                    {group && <div class="td group-cell">{groupStart ? <span class="group-label">{gv}</span> : null}</div>}
                    <div class="td">
                      <input type="checkbox" checked={selSet.has(r.id)} aria-label={`select ${r.name || r.id}`} onClick={(e) => { e.stopPropagation(); toggle(r.id); }} />
                    </div>
                    {allCols.map((c) => (
                      <div class="td" key={c.key}>{c.cell(r, now)}</div>
                    ))}
                  </>
                ) : (
                  <div class="td muted">…</div>
                )}
              </div>
            );
          })}
        </div>
        {total === 0 && !error && <div class="empty">No runs match. Runs appear here as soon as a script calls <code>labtrack.init()</code>.</div>}
      </div>
    </div>
  );
}
