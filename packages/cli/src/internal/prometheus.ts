/**
 * Effect's metric registry (`Metric.snapshot`) in the Prometheus text exposition format (version 0.0.4).
 *
 * Every metric is exported under the `warren_` prefix (added when its name lacks it); counters and gauges as such,
 * histograms with cumulative `_bucket{le=...}`, `_sum` and `_count`, summaries with `{quantile=...}`, frequencies
 * as a counter with one series per value (label `value`).
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"

const sanitize = (name: string): string => {
  const clean = name.replace(/[^a-zA-Z0-9_:]/g, "_")
  return clean.startsWith("warren_") ? clean : `warren_${clean}`
}

const escapeLabel = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")
const escapeHelp = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const labels = (pairs: ReadonlyArray<readonly [string, string]>): string =>
  pairs.length === 0
    ? ""
    : `{${pairs.map(([key, value]) => `${key.replace(/[^a-zA-Z0-9_]/g, "_")}="${escapeLabel(value)}"`).join(",")}}`

const number = (value: number | bigint): string =>
  typeof value === "bigint"
    ? value.toString()
    : Number.isNaN(value)
    ? "NaN"
    : value === Infinity
    ? "+Inf"
    : value === -Infinity
    ? "-Inf"
    : String(value)

interface Family {
  type: "counter" | "gauge" | "histogram" | "summary"
  help: string | undefined
  lines: Array<string>
}

/** The current value of every metric of the process, as Prometheus text. */
export const render: Effect.Effect<string> = Effect.map(Metric.snapshot, (pairs) => {
  const families = new Map<string, Family>()
  const family = (name: string, type: Family["type"], help: string | undefined): Family => {
    let found = families.get(name)
    if (found === undefined) {
      found = { type, help, lines: [] }
      families.set(name, found)
    }
    return found
  }
  for (const pair of pairs) {
    const name = sanitize(pair.metricKey.name)
    const tags = pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const)
    const help = Option.getOrUndefined(pair.metricKey.description)
    const state = pair.metricState
    if (MetricState.isCounterState(state)) {
      family(name, "counter", help).lines.push(`${name}${labels(tags)} ${number(state.count)}`)
    } else if (MetricState.isGaugeState(state)) {
      family(name, "gauge", help).lines.push(`${name}${labels(tags)} ${number(state.value)}`)
    } else if (MetricState.isHistogramState(state)) {
      const lines = family(name, "histogram", help).lines
      let sawInf = false
      for (const [boundary, count] of state.buckets) {
        if (boundary === Infinity) sawInf = true
        lines.push(`${name}_bucket${labels([...tags, ["le", number(boundary)]])} ${count}`)
      }
      if (!sawInf) lines.push(`${name}_bucket${labels([...tags, ["le", "+Inf"]])} ${state.count}`)
      lines.push(`${name}_sum${labels(tags)} ${number(state.sum)}`)
      lines.push(`${name}_count${labels(tags)} ${state.count}`)
    } else if (MetricState.isSummaryState(state)) {
      const lines = family(name, "summary", help).lines
      for (const [quantile, value] of state.quantiles) {
        lines.push(
          `${name}${labels([...tags, ["quantile", String(quantile)]])} ${
            Option.match(value, { onNone: () => "NaN", onSome: number })
          }`
        )
      }
      lines.push(`${name}_sum${labels(tags)} ${number(state.sum)}`)
      lines.push(`${name}_count${labels(tags)} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      const lines = family(name, "counter", help).lines
      for (const [value, count] of state.occurrences) {
        lines.push(`${name}${labels([...tags, ["value", value]])} ${count}`)
      }
    }
  }
  const out: Array<string> = []
  for (const name of Array.from(families.keys()).sort()) {
    const { help, lines, type } = families.get(name)!
    if (help !== undefined && help !== "") out.push(`# HELP ${name} ${escapeHelp(help)}`)
    out.push(`# TYPE ${name} ${type}`)
    out.push(...lines)
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`
})
