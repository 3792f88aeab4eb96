// One Server-Sent-Events connection to /api/v1/stream for every run any view watches.
import { useEffect } from "preact/hooks";
import { fixRow, num, RunRow } from "./api";

export interface ScalarEvent {
  run: string;
  name: string;
  step: number[];
  time: number[];
  value: number[];
}
export interface ConsoleEvent {
  run: string;
  start: number;
  offset: number;
  text: string;
}

type Handlers = {
  scalars: (e: ScalarEvent) => void;
  run: (e: RunRow) => void;
  console: (e: ConsoleEvent) => void;
  runs: (e: { total: number }) => void;
  open: (runs: string[]) => void;
};

class Live {
  private watched = new Map<string, number>();
  private handlers: { [K in keyof Handlers]: Set<Handlers[K]> } = {
    scalars: new Set(), run: new Set(), console: new Set(), runs: new Set(), open: new Set(),
  };
  private source: EventSource | null = null;
  private key = "";
  private timer: number | undefined;

  watch(ids: string[]): () => void {
    for (const id of ids) this.watched.set(id, (this.watched.get(id) ?? 0) + 1);
    this.schedule();
    return () => {
      for (const id of ids) {
        const n = (this.watched.get(id) ?? 1) - 1;
        if (n <= 0) this.watched.delete(id);
        else this.watched.set(id, n);
      }
      this.schedule();
    };
  }

  on<K extends keyof Handlers>(kind: K, fn: Handlers[K]): () => void {
    this.handlers[kind].add(fn);
    this.schedule();
    return () => {
      this.handlers[kind].delete(fn);
    };
  }

  private schedule(): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.connect(), 50);
  }

  private connect(): void {
    // The server follows at most 200 runs per stream (docs/api.md).
    const ids = [...this.watched.keys()].sort().slice(0, 200);
    const key = ids.join(",");
    if (this.source && key === this.key && this.source.readyState !== EventSource.CLOSED) return;
    this.source?.close();
    this.key = key;
    const src = new EventSource("api/v1/stream" + (key ? "?runs=" + encodeURIComponent(key) : ""));
    this.source = src;
    // The stream starts at the files' current ends: whoever fetched before it opened
    // fetches again so nothing written in between is missed.
    src.addEventListener("open", () => this.handlers.open.forEach((h) => h(ids)));
    src.addEventListener("scalars", (ev) => {
      const d = JSON.parse((ev as MessageEvent).data);
      const e: ScalarEvent = {
        run: d.run, name: d.name,
        step: (d.step || []).map(num), time: (d.time || []).map(num), value: (d.value || []).map(num),
      };
      this.handlers.scalars.forEach((h) => h(e));
    });
    src.addEventListener("run", (ev) => {
      const row = fixRow(JSON.parse((ev as MessageEvent).data));
      this.handlers.run.forEach((h) => h(row));
    });
    src.addEventListener("console", (ev) => {
      const d = JSON.parse((ev as MessageEvent).data) as ConsoleEvent;
      this.handlers.console.forEach((h) => h(d));
    });
    src.addEventListener("runs", (ev) => {
      const d = JSON.parse((ev as MessageEvent).data);
      this.handlers.runs.forEach((h) => h({ total: num(d.total) }));
    });
    // EventSource reconnects by itself after a dropped connection.
  }
}

export const live = new Live();

export function useLive<K extends keyof Handlers>(kind: K, fn: Handlers[K], deps: unknown[]): void {
  useEffect(() => live.on(kind, fn), deps);
}

export function useWatch(ids: string[]): void {
  const key = ids.slice().sort().join(",");
  useEffect(() => (key ? live.watch(key.split(",")) : undefined), [key]);
}
