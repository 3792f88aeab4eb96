// A cache of downsampled series per (run, metric), kept current by the live stream.
import { ApiError, fetchScalars, fetchScalarsMany, Series } from "./api";
import { live, ScalarEvent } from "./live";

type Listener = () => void;

const REFETCH_AFTER = 4000; // appended points past this many: ask the server to downsample again
const POINTS = 2000; // points per series, as fetchScalars asks by default
const BATCH = 200; // runs in one /api/v1/scalars?runs= request (the server's limit)

interface Waiting {
  run: string;
  resolve: (s: Series) => void;
  reject: (e: unknown) => void;
}

function key(run: string, name: string): string {
  return run + "\u0000" + name;
}

class SeriesStore {
  private data = new Map<string, Series>();
  private pending = new Map<string, Promise<Series>>();
  private early = new Map<string, ScalarEvent[]>();
  private listeners = new Map<string, Set<Listener>>();
  private newNames = new Set<(run: string, name: string) => void>();
  private finished = new Set<string>();
  // Series asked for in the same moment are fetched together: one request per name for all
  // runs (ten runs of six panels: six requests, not sixty).
  private queue = new Map<string, Waiting[]>();
  private flushTimer: number | undefined;

  constructor() {
    live.on("scalars", (e) => this.append(e));
    // A new stream starts at the files' current ends: points written while it was being
    // (re)opened reach us only by fetching again. The stream's first `run` events say which
    // runs are still running; only their series are fetched again.
    live.on("run", (row) => {
      if (row.status === "running") this.finished.delete(row.id);
      else this.finished.add(row.id);
    });
    live.on("open", (runs) => {
      window.setTimeout(() => {
        const watched = new Set(runs);
        for (const k of this.data.keys()) {
          const [run, name] = k.split("\u0000");
          if (watched.has(run) && !this.finished.has(run)) void this.load(run, name, true);
        }
      }, 300);
    });
  }

  peek(run: string, name: string): Series | undefined {
    return this.data.get(key(run, name));
  }

  load(run: string, name: string, force = false): Promise<Series> {
    const k = key(run, name);
    const have = this.data.get(k);
    if (have && !force) return Promise.resolve(have);
    const p0 = this.pending.get(k);
    if (p0) return p0;
    this.early.set(k, []);
    const p = this.batched(run, name)
      .then((s) => {
        for (const e of this.early.get(k) ?? []) appendPoints(s, e);
        this.data.set(k, s);
        this.notify(k);
        return s;
      })
      .finally(() => {
        this.pending.delete(k);
        this.early.delete(k);
      });
    this.pending.set(k, p);
    return p;
  }

  private batched(run: string, name: string): Promise<Series> {
    return new Promise<Series>((resolve, reject) => {
      const list = this.queue.get(name) ?? [];
      list.push({ run, resolve, reject });
      this.queue.set(name, list);
      if (this.flushTimer === undefined) this.flushTimer = window.setTimeout(() => this.flush(), 0);
    });
  }

  private flush(): void {
    this.flushTimer = undefined;
    const queue = this.queue;
    this.queue = new Map();
    for (const [name, waiting] of queue) {
      // One run alone: the plain endpoint (its 404 names the run's series).
      if (waiting.length === 1) {
        fetchScalars(waiting[0].run, name).then(waiting[0].resolve, waiting[0].reject);
        continue;
      }
      for (let i = 0; i < waiting.length; i += BATCH) {
        const part = waiting.slice(i, i + BATCH);
        fetchScalarsMany([...new Set(part.map((w) => w.run))], name, POINTS)
          .then((got) => {
            for (const w of part) {
              const s = got.get(w.run);
              if (s) w.resolve(s);
              else w.reject(new ApiError(`run ${w.run} has no series ${name}`, 404));
            }
          })
          // A run gone meanwhile fails the whole batch: ask for each run on its own.
          .catch(() => part.forEach((w) => fetchScalars(w.run, name).then(w.resolve, w.reject)));
      }
    }
  }

  subscribe(run: string, name: string, fn: Listener): () => void {
    const k = key(run, name);
    let set = this.listeners.get(k);
    if (!set) this.listeners.set(k, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  onNewName(fn: (run: string, name: string) => void): () => void {
    this.newNames.add(fn);
    return () => this.newNames.delete(fn);
  }

  private notify(k: string): void {
    this.listeners.get(k)?.forEach((fn) => fn());
  }

  private append(e: ScalarEvent): void {
    const k = key(e.run, e.name);
    const early = this.early.get(k);
    if (early) {
      early.push(e);
      return;
    }
    const s = this.data.get(k);
    if (!s) {
      this.newNames.forEach((fn) => fn(e.run, e.name));
      return;
    }
    appendPoints(s, e);
    if (s.value.length > REFETCH_AFTER && s.downsampled) {
      void this.load(e.run, e.name, true);
      return;
    }
    this.notify(k);
  }
}

/** Adds the points of a live event that the series does not hold yet. */
function appendPoints(s: Series, e: ScalarEvent): void {
  const n = s.step.length;
  const lastStep = n ? s.step[n - 1] : -Infinity;
  const lastTime = n ? s.time[n - 1] : -Infinity;
  for (let i = 0; i < e.step.length; i++) {
    const st = e.step[i];
    const t = e.time[i];
    if (n && (st < lastStep || (st === lastStep && !(t > lastTime)))) continue;
    s.step.push(st);
    s.time.push(t);
    s.value.push(e.value[i]);
    if (s.min) s.min.push(e.value[i]);
    if (s.max) s.max.push(e.value[i]);
    s.total += 1;
  }
}

export const seriesStore = new SeriesStore();
