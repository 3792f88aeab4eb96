// Light or dark, as the system says (prefers-color-scheme). The page's colours follow by CSS
// alone; canvases (charts, histograms) ask here for theirs and redraw when it changes.
import { useEffect, useState } from "preact/hooks";

const QUERY = "(prefers-color-scheme: dark)";

export function isDark(): boolean {
  return typeof window !== "undefined" && !!window.matchMedia && window.matchMedia(QUERY).matches;
}

/** True while the system asks for dark colours; re-renders when the setting changes. */
export function useDark(): boolean {
  const [dark, setDark] = useState(isDark);
  useEffect(() => {
    if (!window.matchMedia) return;
    const m = window.matchMedia(QUERY);
    const on = () => setDark(m.matches);
    m.addEventListener("change", on);
    return () => m.removeEventListener("change", on);
  }, []);
  return dark;
}

export interface CanvasColors {
  /** axis lines and their labels */
  axis: string;
  grid: string;
  ticks: string;
  /** a canvas's own background (the panel's) */
  panel: string;
}

export function canvasColors(dark: boolean): CanvasColors {
  return dark
    ? { axis: "#b4bccb", grid: "#2b313c", ticks: "#3d4554", panel: "#1a1e26" }
    : { axis: "#555", grid: "#eee", ticks: "#ddd", panel: "#fff" };
}
