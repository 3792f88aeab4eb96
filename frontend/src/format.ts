export function fmtNumber(v: number | null | undefined): string {
  if (v === null || v === undefined) return "";
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "-∞";
  if (Number.isInteger(v) && Math.abs(v) < 1e12) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return v.toPrecision(5).replace(/\.?0+$/, "");
}

/** A step as people read it: an integer with thousands separators (690,010), never 6.9001e+5. */
export function fmtStep(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return fmtNumber(v);
  return Math.round(v).toLocaleString("en-US");
}

/** Axis tick increments for steps: integers only (1, 2, 5, 10, 20, 50, ...). */
export const STEP_INCRS: number[] = [];
for (let e = 0; e <= 15; e++) for (const m of [1, 2, 5]) STEP_INCRS.push(m * Math.pow(10, e));

/** A run's checkpoints for people: "last step 200 · best step 150 (min 0.31) · 2 kept". */
export function fmtCheckpoints(c: { last?: unknown; best?: unknown; mode?: string | null; metric?: unknown; steps?: unknown } | null | undefined): string {
  if (!c) return "";
  const step = (v: unknown) => (typeof v === "number" ? `step ${fmtStep(v)}` : v === null || v === undefined ? "" : fmtValue(v));
  const parts: string[] = [];
  if (c.last !== null && c.last !== undefined) parts.push(`last ${step(c.last)}`);
  if (c.best !== null && c.best !== undefined) {
    const how = [c.mode, typeof c.metric === "number" ? fmtNumber(c.metric) : c.metric === null || c.metric === undefined ? "" : fmtValue(c.metric)]
      .filter(Boolean).join(" ");
    parts.push(`best ${step(c.best)}${how ? ` (${how})` : ""}`);
  }
  if (Array.isArray(c.steps)) parts.push(`${c.steps.length} kept`);
  return parts.join(" · ");
}

export function fmtValue(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return fmtNumber(v);
  if (typeof v === "string" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

export function fmtDate(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** A running run's duration ticks in the browser; any other run's is the server's. */
export function durationOf(started: string | null, ended: string | null, duration: number | null, running: boolean, now = Date.now()): number | null {
  if (!running && duration !== null && duration !== undefined && Number.isFinite(duration)) return duration;
  if (!started) return duration ?? null;
  const s = new Date(started).getTime();
  // A run that is over but never wrote its end (crashed, killed): only the server knows how
  // long it lived (to its last sign of life); "now" would make it tick forever.
  if (!ended && !running) return duration ?? null;
  const e = ended ? new Date(ended).getTime() : now;
  if (Number.isNaN(s) || Number.isNaN(e)) return duration ?? null;
  return (e - s) / 1000;
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** A series the system sampler records: `system/...`, or `rank<N>/system/...` (docs/system.md). */
export function isSystemMetric(name: string): boolean {
  return /^(rank\d+\/)?system\//.test(name);
}

/** How a system series' values read: bytes as KB/MB/GB, percents with %, °C, W; else plain. */
export function unitFormatter(metric: string): (v: number) => string {
  if (!isSystemMetric(metric)) return fmtNumber;
  const plain = (v: number) => (Math.abs(v) >= 100 ? String(Math.round(v)) : fmtNumber(Number(v.toPrecision(3))));
  if (metric.endsWith("_bytes")) return (v) => (Number.isFinite(v) ? fmtBytes(Math.max(0, Math.round(v))) : fmtNumber(v));
  if (metric.endsWith("percent") || metric.endsWith("/utilization")) return (v) => (Number.isFinite(v) ? `${plain(v)}%` : fmtNumber(v));
  if (metric.endsWith("_c")) return (v) => (Number.isFinite(v) ? `${plain(v)} °C` : fmtNumber(v));
  if (metric.endsWith("_w")) return (v) => (Number.isFinite(v) ? `${plain(v)} W` : fmtNumber(v));
  return fmtNumber;
}

/** Axis ticks of a system series: one unit for all ticks, with the decimals that tell them apart. */
export function axisFormatter(metric: string): (splits: number[]) => string[] {
  const one = unitFormatter(metric);
  if (!isSystemMetric(metric) || !metric.endsWith("_bytes")) return (splits) => splits.map((v) => one(v));
  return (splits) => {
    const top = Math.max(0, ...splits.filter(Number.isFinite).map(Math.abs));
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (i < units.length - 1 && top >= Math.pow(1024, i + 1)) i++;
    const scale = Math.pow(1024, i);
    const incr = splits.length > 1 ? Math.abs(splits[1] - splits[0]) / scale : 1;
    const decimals = i === 0 ? 0 : Math.min(3, Math.max(0, Math.ceil(-Math.log10(incr || 1))));
    return splits.map((v) => (Number.isFinite(v) ? `${(v / scale).toFixed(decimals)} ${units[i]}` : ""));
  };
}
