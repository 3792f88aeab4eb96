// A logged table (run.log_table / labtrack.Table) on the run's page: sorted by a click on a
// column, filtered by text, paged, downloadable as logged. The whole CSV is read once; the
// rest happens in the browser.
import { useEffect, useMemo, useState } from "preact/hooks";
import { fetchFileText, fileUrl, MediaEntry } from "./api";
import { parseCsv } from "./csv";
import { fmtNumber, fmtStep } from "./format";
import { Stepped } from "./media";

export const PAGE_ROWS = 50;
const MAX_ROWS = 200_000;

// A cell labtrack wrote for a labtrack.Image in a table (docs/format.md): the image's path in the run.
const CELL_IMAGE = /^(media\/\d+|tables)\/[^]*\.cells\/\d+-\d+\.png$/;

function isNum(s: string): boolean {
  return s.trim() !== "" && !Number.isNaN(Number(s));
}

export type SortDir = 1 | -1;

/** Compares two cells: numbers by value (before text), text in natural order (a2 < a10). */
export function compareCells(a: string, b: string): number {
  const na = isNum(a), nb = isNum(b);
  if (na && nb) return Number(a) - Number(b);
  if (na !== nb) return na ? -1 : 1;
  if (a === "" || b === "") return a === b ? 0 : a === "" ? 1 : -1; // empty cells last
  return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
}

/** The rows shown: those with a cell containing `filter` (case-insensitive), sorted by column `col`. */
export function viewRows(body: string[][], filter: string, col: number | null, dir: SortDir): string[][] {
  const f = filter.trim().toLowerCase();
  const kept = f ? body.filter((r) => r.some((c) => c.toLowerCase().includes(f))) : body.slice();
  if (col !== null) kept.sort((x, y) => dir * compareCells(x[col] ?? "", y[col] ?? ""));
  return kept;
}

export function LoggedTable({ runId, path, name }: { runId: string; path: string; name: string }) {
  const [rows, setRows] = useState<string[][] | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [filter, setFilter] = useState("");
  const [sort, setSort] = useState<{ col: number; dir: SortDir } | null>(null);
  const [page, setPage] = useState(0);
  useEffect(() => {
    setRows(null);
    fetchFileText(runId, path).then((t) => setRows(parseCsv(t, MAX_ROWS))).catch((e) => setErr(String(e.message ?? e)));
  }, [runId, path]);
  const head = rows?.[0] ?? [];
  const body = useMemo(() => (rows ? rows.slice(1, MAX_ROWS + 1) : []), [rows]);
  const shown = useMemo(() => viewRows(body, filter, sort?.col ?? null, sort?.dir ?? 1), [body, filter, sort]);
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_ROWS));
  const at = Math.min(page, pages - 1);
  useEffect(() => setPage(0), [filter, sort]);
  if (err) return <div class="error">{err}</div>;
  if (!rows) return <div class="muted">loading…</div>;
  const slice = shown.slice(at * PAGE_ROWS, (at + 1) * PAGE_ROWS);
  const clickHead = (j: number) =>
    setSort((s) => (!s || s.col !== j ? { col: j, dir: 1 } : s.dir === 1 ? { col: j, dir: -1 } : null));
  const file = path.split("/").pop() ?? "table.csv";
  return (
    <div class="logged-table" data-testid="logged-table" data-name={name}>
      <div class="table-tools">
        <input type="search" placeholder="filter rows…" value={filter} data-testid="table-filter"
          onInput={(e) => setFilter((e.target as HTMLInputElement).value)} />
        <span class="muted" data-testid="table-count">
          {shown.length ? `rows ${fmtStep(at * PAGE_ROWS + 1)}–${fmtStep(at * PAGE_ROWS + slice.length)} of ${fmtStep(shown.length)}` : "no rows"}
          {filter.trim() && ` (filtered from ${fmtStep(body.length)})`}
          {rows.length > MAX_ROWS && ` · the first ${fmtStep(MAX_ROWS)} rows are shown`}
        </span>
        {pages > 1 && (
          <span class="pager" data-testid="table-pager">
            <button class="small" disabled={at === 0} onClick={() => setPage(0)} title="first page">«</button>
            <button class="small" disabled={at === 0} onClick={() => setPage(at - 1)} data-testid="table-prev">‹ prev</button>
            <span class="muted">page {at + 1} of {pages}</span>
            <button class="small" disabled={at >= pages - 1} onClick={() => setPage(at + 1)} data-testid="table-next">next ›</button>
            <button class="small" disabled={at >= pages - 1} onClick={() => setPage(pages - 1)} title="last page">»</button>
          </span>
        )}
        <a class="download" href={fileUrl(runId, path) + "&download=1"} download={file} data-testid="table-download">download CSV</a>
      </div>
      <div class="table-scroll">
        <table class="data-table">
          <thead>
            <tr>{head.map((h, j) => (
              <th key={j} class="sortable" onClick={() => clickHead(j)} aria-sort={sort?.col === j ? (sort.dir === 1 ? "ascending" : "descending") : "none"}
                title="sort by this column (again: descending, a third time: as logged)">
                {h}{sort?.col === j ? (sort.dir === 1 ? " ▲" : " ▼") : ""}
              </th>
            ))}</tr>
          </thead>
          <tbody>
            {slice.map((r, i) => (
              <tr key={at * PAGE_ROWS + i}>{r.map((c, j) => (
                <td key={j} class={isNum(c) ? "num" : ""}>
                  {CELL_IMAGE.test(c) ? (
                    <a href={fileUrl(runId, c)} target="_blank" rel="noopener">
                      <img class="cell-thumb pixelated" src={fileUrl(runId, c)} alt={`${head[j] ?? ""} row ${i}`} loading="lazy" data-testid="table-thumb" />
                    </a>
                  ) : isNum(c) ? fmtNumber(Number(c)) : c}
                </td>
              ))}</tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

/** A table logged at several steps: a step slider over its versions. */
export function SteppedTable(props: { runId: string; name: string; entries: MediaEntry[] }) {
  return (
    <Stepped name={props.name} items={props.entries}>
      {(e) => <LoggedTable runId={props.runId} path={e.path} name={props.name} />}
    </Stepped>
  );
}
