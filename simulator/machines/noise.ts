/**
 * Seed plumbing and stateless noise. Sensor noise is a hash of (seed, step, channel) rather than
 * the next draw of a sequential generator, so that a snapshot's values depend only on the seed and
 * the simulated time, not on how many snapshots were taken before (several protocol servers may
 * read the same machine at different rates).
 */

/** Final mix of murmur3: spreads every input bit over the 32-bit output. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** 32-bit FNV-1a of a string: stable ids for asset names and stream names. */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Hash of a few integers into one 32-bit value. */
export function hash32(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    // Split into two 32-bit halves so step indices beyond 2^32 still hash distinctly.
    const lo = p >>> 0;
    const hi = Math.floor(p / 4294967296) >>> 0;
    h = fmix32(h ^ lo) + 0x7f4a7c15;
    h = fmix32(h ^ hi);
  }
  return h >>> 0;
}

/** A seed for an independent stream (`plan`, `modes`, `process`) derived from a machine's seed. */
export function deriveSeed(seed: number, stream: string | number): number {
  return hash32(seed >>> 0, typeof stream === 'number' ? stream : hashString(stream));
}

/** Uniform in (0, 1) from a hash. */
function unit(h: number): number {
  return (h + 0.5) / 4294967296;
}

/** A standard normal value that is a pure function of its arguments (Box-Muller on two hashes). */
export function hashGaussian(seed: number, step: number, channel: number): number {
  const u = unit(hash32(seed, step, channel, 1));
  const v = unit(hash32(seed, step, channel, 2));
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Weibull draw from a uniform in (0, 1): bearing and seal lives are classically Weibull. */
export function weibull(uniform: number, shape: number, scale: number): number {
  return scale * Math.pow(-Math.log(1 - Math.min(uniform, 1 - 1e-12)), 1 / shape);
}

/** Γ(1 + 1/k) by Lanczos, to turn a mean life into a Weibull scale. */
export function gammaOnePlus(x: number): number {
  const g = 7;
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  const z = x; // Γ(1 + x) = Γ(z + 1) with z = x
  let a = c[0]!;
  const t = z + g + 0.5;
  for (let i = 1; i < g + 2; i++) a += c[i]! / (z + i);
  return Math.sqrt(2 * Math.PI) * Math.pow(t, z + 0.5) * Math.exp(-t) * a;
}
