// Draws bench/results/<name>.svg from bench/results/<name>.json: per workload, each contender's median of the
// workload's main metric relative to the baseline (raw amqplib / the raw net server), with a
// min..max whisker and the goal as a dashed line. Plain SVG text, no dependencies.
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

const resultsDir = fileURLToPath(new URL("./results/", import.meta.url))

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

const formatValue = (field, v) => {
  if (v === null || v === undefined || !Number.isFinite(v)) return "-"
  if (field === "throughput") return `${Math.round(v).toLocaleString("en-US")} req/s`
  if (field.endsWith("KB")) return `${v.toFixed(2)} KiB/conn`
  return v.toFixed(2)
}

const METRIC_NAMES = { throughput: "throughput", rssPerConnKB: "RSS per idle connection" }

const COLORS = { warren: "#2f6fb3", amqplib: "#8a8a8a", "rabbitmq-client": "#c58b2a", raw: "#8a8a8a" }

/** Renders one report as an SVG string. */
export const renderChart = (report) => {
  const width = 820
  const left = 250
  const right = 190
  const plot = width - left - right
  const barH = 16
  const gap = 6
  const groups = report.workloads.map((w) => {
    // the baseline is the contender the workload's first goal compares against (raw amqplib / the raw server)
    const baselineId = w.goals[0]?.versus
    const baseline = w.contenders.find((c) => c.id === baselineId) ?? w.contenders[w.contenders.length - 1]
    const base = baseline?.runs.length ? baseline.median[w.primary] : NaN
    let maxRatio = 1.2
    const bars = w.contenders.map((c) => {
      const ok = c.available && c.runs.length > 0 && Number.isFinite(base)
      const ratio = ok ? c.median[w.primary] / base : null
      const lo = ok ? c.min[w.primary] / base : null
      const hi = ok ? c.max[w.primary] / base : null
      if (hi !== null) maxRatio = Math.max(maxRatio, hi * 1.05)
      return { c, ratio, lo, hi }
    })
    const goal = w.goals.find((g) => g.versus === baseline?.id && g.field === w.primary)
    if (goal) maxRatio = Math.max(maxRatio, goal.ratio * 1.1)
    return { w, baseline, bars, goal, maxRatio }
  })
  const parts = []
  let y = 44
  for (const { w, baseline, bars, goal, maxRatio } of groups) {
    // each workload has its own scale, from 0 to a bit beyond its largest ratio
    const x = (r) => left + (Math.min(r, maxRatio) / maxRatio) * plot
    const direction = w.higherIsBetter ? "higher is better" : "lower is better"
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${esc(w.title)}</text>`)
    parts.push(
      `<text x="${width - 10}" y="${y + 12}" text-anchor="end" fill="#666">${
        esc(`${METRIC_NAMES[w.primary] ?? w.primary} vs ${baseline?.label ?? "?"}, ${direction}`)
      }</text>`
    )
    y += 20
    const top = y
    for (const { c, ratio, lo, hi } of bars) {
      parts.push(`<text x="${left - 8}" y="${y + 12}" text-anchor="end">${esc(c.label)}</text>`)
      if (ratio === null) {
        const why = c.available ? "no result" : "not available yet"
        parts.push(`<text x="${left + 4}" y="${y + 12}" fill="#a33" font-style="italic">${why}</text>`)
      } else {
        const fill = COLORS[c.id] ?? "#5a9"
        parts.push(
          `<rect x="${left}" y="${y}" width="${(x(ratio) - left).toFixed(1)}" height="${barH}" fill="${fill}"/>`
        )
        parts.push(
          `<line x1="${x(lo).toFixed(1)}" x2="${x(hi).toFixed(1)}" y1="${y + barH / 2}" y2="${
            y + barH / 2
          }" stroke="#222" stroke-width="1.5"/>`
        )
        parts.push(
          `<text x="${width - right + 8}" y="${y + 12}">${
            esc(`${ratio.toFixed(2)}x  ${formatValue(w.primary, c.median[w.primary])}`)
          }</text>`
        )
      }
      y += barH + gap
    }
    if (goal) {
      const gx = x(goal.ratio).toFixed(1)
      const verdict = goal.met === null ? "" : goal.met ? " met" : " missed"
      parts.push(
        `<line x1="${gx}" x2="${gx}" y1="${top - 4}" y2="${y - gap + 4}" stroke="#c33" stroke-dasharray="4 3"/>`
      )
      parts.push(
        `<text x="${gx}" y="${y + 8}" text-anchor="middle" fill="#c33" font-size="11">${
          esc(`goal ${goal.op} ${goal.ratio}x${verdict}`)
        }</text>`
      )
    }
    const one = x(1).toFixed(1)
    parts.push(`<line x1="${one}" x2="${one}" y1="${top - 4}" y2="${y - gap + 4}" stroke="#444" stroke-width="0.8"/>`)
    y += 26
  }
  const height = y + 20
  const head = `${report.name.toUpperCase()} benchmark: median of ${
    report.options?.rounds ?? "?"
  } runs / baseline median (whiskers: min..max)`
  const foot = `${report.date.slice(0, 10)} · node ${report.machine.node} · ${report.machine.cpus} CPUs${
    report.machine.cpuModel ? ` (${report.machine.cpuModel})` : ""
  }`
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="22" font-size="14" font-weight="bold">${esc(head)}</text>`,
    ...parts,
    `<text x="10" y="${height - 8}" fill="#666" font-size="11">${esc(foot)}</text>`,
    `</svg>`,
    ""
  ].join("\n")
}

/** Regenerates the SVG of every benchmark whose JSON exists. */
export const writeCharts = (names = ["rpc", "pb"]) => {
  for (const name of names) {
    const json = `${resultsDir}${name}.json`
    if (!existsSync(json)) continue
    const svg = `${resultsDir}${name}.svg`
    writeFileSync(svg, renderChart(JSON.parse(readFileSync(json, "utf8"))))
    console.log(`wrote ${svg}`)
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) writeCharts()
