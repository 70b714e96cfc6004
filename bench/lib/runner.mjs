// Runs workloads with interleaved contenders, summarizes (median, min, max), checks goals (on the rounds' paired
// ratios), prints, writes JSON.
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, release } from "node:os"
import { dirname } from "node:path"
import { summarize } from "./stats.mjs"

/**
 * For each workload, runs every contender once per round, in the listed order (ours first, then the baselines),
 * `rounds` times: ours, baseline, ours, baseline, ... A contender that reports "not available" is tried once and
 * then kept as a "not available yet" row.
 *
 * `workload`: { id, title, params, contenders: [{ id, label }], fields: [...], goals: [{ text, contender, versus,
 * field, op: ">=" | "<=" | ">", ratio }] }
 * `runOne(workload, contender, round)` resolves with one run's metrics.
 */
export const runWorkloads = async ({ name, workloads, rounds, runOne, options }) => {
  const report = {
    name,
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, kernel: release() },
    options,
    workloads: []
  }
  for (const workload of workloads) {
    console.log(`\n== ${name}: ${workload.title}`)
    const entries = workload.contenders.map((c) => ({
      id: c.id,
      label: c.label,
      available: true,
      note: undefined,
      runs: []
    }))
    for (let round = 1; round <= rounds; round++) {
      for (const entry of entries) {
        if (!entry.available) continue
        const contender = workload.contenders.find((c) => c.id === entry.id)
        try {
          const result = await runOne(workload, contender, round)
          entry.runs.push({ ...result, round })
          console.log(`  round ${round} ${entry.label.padEnd(18)} ${workload.describe(result)}`)
        } catch (error) {
          if (error.notAvailable) {
            entry.available = false
            entry.note = firstLine(error.message)
            console.log(`  round ${round} ${entry.label.padEnd(18)} not available yet: ${entry.note}`)
          } else {
            entry.failures = (entry.failures ?? 0) + 1
            entry.note = firstLine(error.message)
            console.log(`  round ${round} ${entry.label.padEnd(18)} FAILED: ${error.message}`)
          }
        }
      }
    }
    for (const entry of entries) Object.assign(entry, summarize(entry.runs, workload.fields))
    const goals = (workload.goals ?? []).map((goal) => checkGoal(goal, entries))
    const ratios = {}
    for (const goal of goals) ratios[`${goal.contender}/${goal.versus} ${goal.field}`] = goal.actual
    const result = {
      id: workload.id,
      title: workload.title,
      params: workload.params,
      pinned: workload.pinned,
      primary: workload.primary,
      higherIsBetter: workload.higherIsBetter !== false,
      contenders: entries,
      ratios,
      goals
    }
    report.workloads.push(result)
    printTable(result, workload)
    result.columns = workload.columns
  }
  return report
}

const firstLine = (s) => String(s).split("\n").find((l) => l.trim() !== "")?.trim() ?? String(s)

/**
 * A goal's ratio: the median over rounds of each round's ratio (ours over theirs, run next to each other), which a
 * machine whose speed drifts between rounds disturbs much less than a ratio of the two medians; with fewer than
 * three rounds run by both, the ratio of the medians. Both are reported.
 */
const checkGoal = (goal, entries) => {
  const ours = entries.find((e) => e.id === goal.contender)
  const theirs = entries.find((e) => e.id === goal.versus)
  const a = ours?.runs.length ? ours.median[goal.field] : NaN
  const b = theirs?.runs.length ? theirs.median[goal.field] : NaN
  const ofMedians = a / b
  const perRound = (ours?.runs ?? []).flatMap((run) => {
    const other = theirs?.runs.find((r) => r.round === run.round)
    const ratio = other === undefined ? NaN : run[goal.field] / other[goal.field]
    return Number.isFinite(ratio) ? [ratio] : []
  }).sort((x, y) => x - y)
  const actual = perRound.length >= 3 ? medianOf(perRound) : ofMedians
  const met = !Number.isFinite(actual) ?
    null
    : goal.op === ">=" ?
    actual >= goal.ratio
    : goal.op === ">" ?
    actual > goal.ratio
    : actual <= goal.ratio
  return {
    ...goal,
    actual: Number.isFinite(actual) ? actual : null,
    met,
    ofMedians: Number.isFinite(ofMedians) ? ofMedians : null,
    perRound: perRound.length >= 3 ? perRound : null
  }
}

const medianOf = (sorted) =>
  sorted.length % 2 === 1
    ? sorted[sorted.length >> 1]
    : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2

/** How a goal's ratio was found: the rounds' ratios (lowest..highest) and the ratio of the medians. */
const ratioDetail = (goal) =>
  goal.perRound === null || goal.perRound === undefined
    ? "ratio of medians"
    : `median of ${goal.perRound.length} rounds' ratios, ${goal.perRound[0].toFixed(2)}..${
      goal.perRound[goal.perRound.length - 1].toFixed(2)
    }; ratio of medians ${goal.ofMedians === null ? "-" : goal.ofMedians.toFixed(2) + "x"}`

const fmt = (x, digits = 2) => {
  if (x === undefined || x === null || !Number.isFinite(x)) return "-"
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US")
  return x.toFixed(digits)
}

const printTable = (result, workload) => {
  const columns = workload.columns
  const header = ["contender", "runs", ...columns.map((c) => c.title)]
  const rows = result.contenders.map((e) => {
    if (!e.available) return [e.label, "0", ...columns.map(() => ""), `not available yet: ${e.note}`]
    return [
      e.label,
      String(e.runs.length),
      ...columns.map((c) =>
        e.runs.length === 0
          ? "-"
          : `${fmt(e.median[c.field], c.digits)} (${fmt(e.min[c.field], c.digits)}..${fmt(e.max[c.field], c.digits)})`
      )
    ]
  })
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells) => "  " + cells.map((c, i) => (c ?? "").padEnd(widths[i] ?? 0)).join("  ")
  console.log(`\n  median (min..max) over rounds`)
  console.log(line(header))
  console.log(line(widths.map((w) => "-".repeat(w))))
  for (const row of rows) console.log(line(row))
  for (const goal of result.goals) {
    const verdict = goal.met === null ? "n/a" : goal.met ? "met" : "MISSED"
    console.log(
      `  goal: ${goal.text}: ${goal.actual === null ? "-" : goal.actual.toFixed(2) + "x"} (${
        ratioDetail(goal)
      }) -> ${verdict}`
    )
  }
}

/** Writes the report as pretty JSON. */
export const writeReport = (path, report) => {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(
    path,
    JSON.stringify(report, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n"
  )
  console.log(`\nwrote ${path}`)
}

/** The report as Markdown tables (median, with min..max), for docs/benchmarks.md. */
export const markdownReport = (report, workloads) => {
  const lines = [
    `_${report.name} run of ${report.date.slice(0, 16).replace("T", " ")} UTC, node ${report.machine.node}, ` +
    `${report.machine.cpus} CPUs; ${report.options.rounds} rounds x ${report.options.durationMs / 1000} s after a ${
      report.options.warmupMs / 1000
    } s warm-up; median (min..max)._`,
    ""
  ]
  for (const w of report.workloads) {
    const columns = w.columns ?? workloads?.find((x) => x.id === w.id)?.columns ?? []
    lines.push(`**${w.title}**`, "")
    lines.push(`| contender | ${columns.map((c) => c.title).join(" | ")} |`)
    lines.push(`|---|${columns.map(() => "---:").join("|")}|`)
    for (const e of w.contenders) {
      if (!e.available || e.runs.length === 0) {
        lines.push(
          `| ${e.label} | ${e.available ? "no result" : "not available yet"}${e.note ? `: ${e.note}` : ""} |${
            columns.slice(1).map(() => " |").join("")
          }`
        )
        continue
      }
      lines.push(
        `| ${e.label} | ${
          columns.map((c) =>
            `${fmt(e.median[c.field], c.digits)} (${fmt(e.min[c.field], c.digits)}..${fmt(e.max[c.field], c.digits)})`
          ).join(" | ")
        } |`
      )
    }
    lines.push("")
    for (const g of w.goals) {
      const verdict = g.met === null ? "n/a" : g.met ? "met" : "**missed**"
      lines.push(`- ${g.text}: ${g.actual === null ? "-" : `${g.actual.toFixed(2)}x`} (${ratioDetail(g)}), ${verdict}`)
    }
    lines.push("")
  }
  return lines.join("\n")
}
