// Run colours: distinct and stable. A run keeps the colour it got when it first appeared
// among the shown runs for as long as it stays shown; a new run takes the first colour no
// shown run holds. Loading a link assigns colours in the link's selection order.

// The first ten are matplotlib's tab10; the other ten were picked, one at a time, as the
// colour farthest (CIEDE2000) from all before it among mid-light colours that read on both
// the light and the dark background: no two of the twenty are closer than ΔE 14 (the old
// second ten had pairs at 8-10, brown next to brown). tests/test_palette.py checks it.
export const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#7f7f7f", "#bcbd22", "#806b19", "#198075", "#eb968d", "#8da9eb", "#7acca3", "#cc296a",
  "#ccab7a", "#a66321", "#6b804c", "#89cc5c",
];

const remembered = new Map<string, number>();

export function runColors(ids: string[]): Map<string, string> {
  const shown = new Set(ids);
  for (const id of [...remembered.keys()]) if (!shown.has(id)) remembered.delete(id);
  const taken = new Set(remembered.values());
  for (const id of ids) {
    if (remembered.has(id)) continue;
    let slot = 0;
    while (taken.has(slot) && slot < PALETTE.length * 8) slot++;
    remembered.set(id, slot);
    taken.add(slot);
  }
  const out = new Map<string, string>();
  for (const id of ids) out.set(id, PALETTE[remembered.get(id)! % PALETTE.length]);
  return out;
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export function withAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

/** A colour per class name for bounding boxes. */
export function classColor(name: string): string {
  return PALETTE[hash(name) % 10];
}
