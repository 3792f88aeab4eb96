// Run colours: distinct and stable. A run keeps the palette slot its id hashes to unless an
// earlier-selected run holds it; then it takes the next free slot.

export const PALETTE = [
  "#1f77b4", "#e6550d", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#393b79", "#ff9896", "#31a354", "#756bb1", "#fd8d3c", "#637939", "#7b4173",
  "#3182bd", "#a55194", "#e7ba52", "#636363",
];

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

export function runColors(ids: string[]): Map<string, string> {
  const taken = new Set<number>();
  const out = new Map<string, string>();
  for (const id of ids) {
    let slot = hash(id) % PALETTE.length;
    for (let k = 0; k < PALETTE.length && taken.has(slot); k++) slot = (slot + 1) % PALETTE.length;
    taken.add(slot);
    if (taken.size >= PALETTE.length) taken.clear();
    out.set(id, PALETTE[slot]);
  }
  return out;
}

export function withAlpha(hex: string, alpha: number): string {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
}

/** A colour per class name for bounding boxes. */
export function classColor(name: string): string {
  return PALETTE[hash(name) % PALETTE.length];
}
