// The URL hash holds the view and its state, so any view can be shared as a link:
//   #/?sel=id1,id2&metrics=train/loss&smooth=0.6&x=step&log=1&q=...&where=...&sort=-started
//   #/run/<id>?tab=media
//   #/compare?runs=id1,id2&metric=val/acc
import { useEffect, useState } from "preact/hooks";

export interface Route {
  path: string;
  params: URLSearchParams;
}

export function parseHash(hash: string = location.hash): Route {
  const h = hash.replace(/^#/, "") || "/";
  const i = h.indexOf("?");
  const path = i >= 0 ? h.slice(0, i) : h;
  const params = new URLSearchParams(i >= 0 ? h.slice(i + 1) : "");
  return { path: path || "/", params };
}

export function buildHash(path: string, params: Record<string, string | undefined | null>): string {
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") sp.set(k, v);
  }
  const s = sp.toString();
  return "#" + path + (s ? "?" + s : "");
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

/** Change some keys of the current view's state; `replace` keeps history short for sliders. */
export function updateParams(changes: Record<string, string | undefined | null>, replace = true): void {
  const r = parseHash();
  const all: Record<string, string | null | undefined> = {};
  r.params.forEach((v, k) => (all[k] = v));
  Object.assign(all, changes);
  const next = buildHash(r.path, all);
  if (next === location.hash) return;
  if (replace) {
    history.replaceState(null, "", next);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = next;
  }
}

export function navigate(path: string, params: Record<string, string | undefined | null> = {}): void {
  location.hash = buildHash(path, params);
}

export function listParam(p: URLSearchParams, key: string): string[] {
  const v = p.get(key);
  return v ? v.split(",").filter(Boolean) : [];
}
