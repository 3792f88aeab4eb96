// The HTTP API of docs/api.md, typed. Every request goes through here.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface RunRow {
  id: string;
  experiment: string;
  name: string | null;
  comment: string | null;
  tags: string[];
  status: string;
  started: string | null;
  ended: string | null;
  duration: number | null;
  commit: string | null;
  dirty: boolean | null;
  host: string | null;
  group?: string | null;
  job_type?: string | null;
  params: Record<string, Json>;
  metrics: Record<string, number>;
}

export interface RunsPage {
  total: number;
  offset: number;
  runs: RunRow[];
  /** runs of a never-indexed root still being read (the newest are in already) */
  pending?: number;
}

export interface Columns {
  params: string[];
  metrics: string[];
  experiments: string[];
}

export interface SummaryEntry {
  last: number;
  min: number;
  max: number;
  mean?: number;
  sum?: number;
  count: number;
  step: number;
  time: number;
  /** A value the script set (wandb's run.summary[...] = v): shown instead of the last point. */
  value?: number | string | boolean | null;
}

export interface RunDetail {
  id: string;
  experiment: string;
  name: string | null;
  comment: string | null;
  tags: string[];
  status: string;
  started: string | null;
  ended: string | null;
  pid?: number;
  duration?: number | null;
  names?: { scalars?: string[]; text?: string[]; histograms?: string[]; tables?: string[]; markdown?: string[] };
  /** Each name with the path it is stored at (the server escapes; the browser never does). */
  named?: Partial<Record<NamedKind, Named[]>>;
  host?: string | null;
  user?: string | null;
  command?: { argv?: string[]; script?: string; cwd?: string; python?: string } | null;
  git?: {
    commit?: string; message?: string; branch?: string; dirty?: boolean; remote?: string; root?: string;
  } | null;
  seed?: number | null;
  parent?: string | null;
  error?: { type?: string; message?: string; traceback?: string } | null;
  checkpoints?: { last?: Json; best?: Json; mode?: string | null; metric?: string | null } | null;
  params: Record<string, Json>;
  summary: Record<string, SummaryEntry>;
  /** Each series' declared direction, "min" or "max" (run.json `metrics`, define_metric's goal). */
  directions?: Record<string, "min" | "max">;
  env?: {
    python?: { version?: string; implementation?: string; executable?: string };
    platform?: { system?: string; release?: string; machine?: string };
    packages?: Record<string, string>;
    gpus?: { name?: string; memory?: number }[];
    host?: string;
    cpus?: number;
  } | null;
  options?: Json;
  /** A run of a distributed job (docs/distributed.md). */
  distributed?: { mode?: string | null; launcher?: string | null; rank?: number; world_size?: number; job_id?: string | null } | null;
  /** A one-run job: each rank's state (derived: a dead rank is "crashed"). */
  ranks?: { rank: number; status: string; host?: string | null; pid?: number | null }[];
  /** Where each rank's console is (rank 0: console.log). */
  consoles?: { rank: number; path: string }[];
  group?: string | null;
  job_type?: string | null;
  /** The run's notes (markdown, notes.md; "" when none). */
  notes?: string;
}

export type NamedKind = "scalars" | "text" | "histograms" | "tables" | "markdown";

export interface Named {
  name: string;
  path: string;
}

export interface FileEntry {
  path: string;
  size: number;
  mtime: number;
}

export interface Series {
  name: string;
  total: number;
  downsampled: boolean;
  step: number[];
  time: number[];
  value: number[];
  min?: number[];
  max?: number[];
}

export interface MediaEntry {
  step: number;
  name: string;
  kind: string;
  path: string;
  time?: number;
  width?: number;
  height?: number;
  boxes?: string;
  caption?: string;
  // audio
  sample_rate?: number;
  duration?: number;
  channels?: number;
  // video
  fps?: number;
  frames?: number;
  format?: string;
  // table: how many cells hold an image
  images?: number;
}

export interface TextRecord {
  step: number;
  text: string;
  expected?: string;
  time?: number;
}

export interface HistogramRecord {
  step: number;
  bins: number[];
  counts: number[];
  time?: number;
  min?: number;
  max?: number;
  count?: number;
}

export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

const BASE = "api/v1";

/** JSON carries non-finite floats as strings; the charts need numbers. */
export function num(v: unknown): number {
  if (typeof v === "number") return v;
  if (v === "NaN") return NaN;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  if (v === null || v === undefined) return NaN;
  const n = Number(v);
  return n;
}

function numArray(a: unknown): number[] {
  if (!Array.isArray(a)) return [];
  return a.map(num);
}

export function query(params: Record<string, string | number | undefined | null>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? "?" + parts.join("&") : "";
}

async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(`${BASE}/${path}`, { signal, headers: { Accept: "application/json" } });
  if (res.status === 401) {
    // A server started with tokens (`labtrack serve`): its login form sets the read cookie.
    window.location.assign("login");
    throw new ApiError("this server needs a token: log in at /login", 401);
  }
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (body && typeof body.error === "string") msg = body.error;
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(msg, res.status);
  }
  return (await res.json()) as T;
}

export function fileUrl(runId: string, path: string): string {
  return `${BASE}/runs/${encodeURIComponent(runId)}/file${query({ path })}`;
}

export interface RunsQuery {
  offset: number;
  limit: number;
  sort?: string;
  q?: string;
  where?: string;
  columns?: string[];
}

export function fetchRuns(rq: RunsQuery, signal?: AbortSignal): Promise<RunsPage> {
  return getJson<RunsPage>(
    "runs" +
      query({
        offset: rq.offset,
        limit: rq.limit,
        sort: rq.sort,
        q: rq.q,
        where: rq.where,
        columns: rq.columns && rq.columns.length ? rq.columns.join(",") : undefined,
      }),
    signal,
  ).then((page) => {
    for (const r of page.runs) fixRow(r);
    return page;
  });
}

export function fixRow(r: RunRow): RunRow {
  r.tags = Array.isArray(r.tags) ? r.tags : [];
  r.params = r.params || {};
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.metrics || {})) metrics[k] = num(v);
  r.metrics = metrics;
  return r;
}

export function fetchColumns(): Promise<Columns> {
  return getJson<Columns>("columns");
}

export async function fetchRun(id: string, signal?: AbortSignal): Promise<RunDetail> {
  const d = await getJson<RunDetail>(`runs/${encodeURIComponent(id)}`, signal);
  d.params = d.params || {};
  d.tags = Array.isArray(d.tags) ? d.tags : [];
  const summary: Record<string, SummaryEntry> = {};
  for (const [k, v] of Object.entries(d.summary || {})) {
    const e = v as unknown as Record<string, unknown>;
    summary[k] = {
      last: num(e.last), min: num(e.min), max: num(e.max), mean: num(e.mean), sum: num(e.sum),
      count: num(e.count), step: num(e.step), time: num(e.time),
    };
    const value = e.value;
    if (typeof value === "number" || typeof value === "string" || typeof value === "boolean") summary[k].value = value;
  }
  d.summary = summary;
  return d;
}

export async function fetchFiles(id: string): Promise<FileEntry[]> {
  const r = await getJson<{ files: FileEntry[] }>(`runs/${encodeURIComponent(id)}/files`);
  return r.files || [];
}

export interface ScalarQuery {
  points?: number;
  x?: "step" | "time";
  xmin?: number;
  xmax?: number;
}

export async function fetchScalars(id: string, name: string, sq: ScalarQuery = {}, signal?: AbortSignal): Promise<Series> {
  const r = await getJson<Record<string, unknown>>(
    `runs/${encodeURIComponent(id)}/scalars` +
      query({ name, points: sq.points ?? 2000, x: sq.x ?? "step", xmin: sq.xmin, xmax: sq.xmax }),
    signal,
  );
  return toSeries(r, name);
}

/** A series answer of the API (one run's, or one run's part of a many-runs answer). */
function toSeries(r: Record<string, unknown>, name: string): Series {
  return {
    name: String(r.name ?? name),
    total: num(r.total),
    downsampled: Boolean(r.downsampled),
    step: numArray(r.step),
    time: numArray(r.time),
    value: numArray(r.value),
    min: r.min ? numArray(r.min) : undefined,
    max: r.max ? numArray(r.max) : undefined,
  };
}

/** One series of many runs in one request (`/api/v1/scalars?runs=`); null: a run without it. */
export async function fetchScalarsMany(ids: string[], name: string, points = 500, x: "step" | "time" = "step", signal?: AbortSignal): Promise<Map<string, Series | null>> {
  const r = await getJson<{ runs?: Record<string, Record<string, unknown> | null> }>(
    "scalars" + query({ runs: ids.join(","), name, points, x }),
    signal,
  );
  const out = new Map<string, Series | null>();
  for (const [id, s] of Object.entries(r.runs ?? {})) {
    out.set(id, s && toSeries(s, name));
  }
  return out;
}

/** JSONL records, read in chunks: each answer says where the next chunk starts. */
async function fetchRecords<T>(path: string, key: string, extra: Record<string, string> = {}): Promise<T[]> {
  const out: T[] = [];
  let offset = 0;
  for (let i = 0; i < 64; i++) {
    const r = await getJson<T[] | Record<string, unknown>>(path + query({ ...extra, offset }));
    if (Array.isArray(r)) return r;
    const recs = (r[key] as T[] | undefined) ?? [];
    out.push(...recs);
    const next = num(r.offset);
    if (!recs.length || !Number.isFinite(next) || next <= offset) break;
    offset = next;
  }
  return out;
}

export function fetchMedia(id: string): Promise<MediaEntry[]> {
  return fetchRecords<MediaEntry>(`runs/${encodeURIComponent(id)}/media`, "media");
}

/** The records of one text stream, by the path the run's `named` listing gave. */
export function fetchText(id: string, path: string): Promise<TextRecord[]> {
  return fetchRecords<TextRecord>(`runs/${encodeURIComponent(id)}/text`, "records", { path });
}

/** The records of one histogram stream, by the path the run's `named` listing gave. */
export async function fetchHistograms(id: string, path: string): Promise<HistogramRecord[]> {
  const recs = await fetchRecords<HistogramRecord>(`runs/${encodeURIComponent(id)}/histograms`, "records", { path });
  return recs.map((h) => ({ ...h, bins: numArray(h.bins), counts: numArray(h.counts) }));
}

export async function fetchConsole(id: string, offset = 0, rank = 0): Promise<{ offset: number; size?: number; text: string }> {
  return getJson(`runs/${encodeURIComponent(id)}/console` + query(rank ? { offset, rank } : { offset }));
}

export async function fetchFileText(id: string, path: string): Promise<string> {
  const res = await fetch(fileUrl(id, path));
  if (!res.ok) throw new ApiError(`${path}: ${res.status}`, res.status);
  return res.text();
}

export interface MetaEdit {
  comment?: string;
  tags?: string[];
  notes?: string;
}

export interface MetaResult {
  id: string;
  comment: string;
  tags: string[];
  notes: string;
}

const WRITE_TOKEN_KEY = "labtrack-write-token";

/** The write token this tab was given (a `labtrack serve --tokens` server: the login cookie
 * only reads). Kept for the tab's life only (sessionStorage). */
export function writeToken(): string {
  try {
    return window.sessionStorage.getItem(WRITE_TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setWriteToken(token: string): void {
  try {
    if (token) window.sessionStorage.setItem(WRITE_TOKEN_KEY, token);
    else window.sessionStorage.removeItem(WRITE_TOKEN_KEY);
  } catch {
    // storage refused (private mode): the token is asked for again next time
  }
}

/** Change a run's comment, tags and notes (`PATCH /api/v1/runs/{id}/meta`). JSON with the
 * client header: the server takes no form posts and no writes from other origins. A 401 or
 * 403 means a token with the write scope is needed (ApiError.status says which). */
export async function patchMeta(id: string, edit: MetaEdit): Promise<MetaResult> {
  const headers: Record<string, string> = {
    "Content-Type": "application/json", Accept: "application/json", "X-Labtrack-Client": "dashboard",
  };
  const token = writeToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${BASE}/runs/${encodeURIComponent(id)}/meta`, {
    method: "PATCH", headers, body: JSON.stringify(edit), credentials: "same-origin",
  });
  let body: Record<string, unknown> = {};
  try {
    body = await res.json();
  } catch {
    // not JSON: the status line says it
  }
  if (!res.ok) throw new ApiError(typeof body.error === "string" ? body.error : `${res.status} ${res.statusText}`, res.status);
  return {
    id: String(body.id ?? id), comment: String(body.comment ?? ""),
    tags: Array.isArray(body.tags) ? body.tags.map(String) : [], notes: String(body.notes ?? ""),
  };
}
