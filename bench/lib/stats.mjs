// Latency histogram and summary statistics shared by the load generators and the runner.

/**
 * A log-scale latency histogram: 64 sub-buckets per power of two (about 1.1 % resolution) over nanoseconds.
 * Fixed size, so recording never allocates and never grows the load generator's memory.
 */
export class Histogram {
  static SUB = 64
  constructor() {
    this.counts = new Float64Array(48 * Histogram.SUB)
    this.total = 0
  }
  /** Records one latency in nanoseconds. */
  record(ns) {
    const v = ns < 1 ? 1 : ns
    const i = Math.min(this.counts.length - 1, Math.floor(Math.log2(v) * Histogram.SUB))
    this.counts[i]++
    this.total++
  }
  reset() {
    this.counts.fill(0)
    this.total = 0
  }
  /** The latency (ns) below which a fraction `q` of the samples fall (bucket midpoint). */
  quantile(q) {
    if (this.total === 0) return NaN
    const target = q * this.total
    let seen = 0
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]
      if (seen >= target) return Math.pow(2, (i + 0.5) / Histogram.SUB)
    }
    return NaN
  }
  /** Adds another histogram's counts into this one. */
  merge(other) {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += other.counts[i]
    this.total += other.total
  }
}

/** The median of a list of numbers (mean of the middle two for an even count). */
export const median = (values) => {
  const xs = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (xs.length === 0) return NaN
  const mid = xs.length >> 1
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2
}

/** Median, min and max of each numeric field over a list of run results. */
export const summarize = (runs, fields) => {
  const out = { median: {}, min: {}, max: {} }
  for (const field of fields) {
    const xs = runs.map((r) => r[field]).filter((x) => Number.isFinite(x))
    out.median[field] = median(xs)
    out.min[field] = xs.length ? Math.min(...xs) : NaN
    out.max[field] = xs.length ? Math.max(...xs) : NaN
  }
  return out
}

/** The elapsed CPU time (user + system, microseconds) between two `process.cpuUsage()` readings. */
export const cpuMicros = (from, to) => (to.user - from.user) + (to.system - from.system)
