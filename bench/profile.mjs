// Summarizes `node --cpu-prof` profiles: time by area (warren, effect, amqplib, node internals, GC, idle), and the
// top functions by self and by inclusive time, as shares of the profile's busy (non-idle) time.
// Usage: node bench/profile.mjs [--last-ms N] <dir or .cpuprofile>...
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { basename, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../", import.meta.url))

const shortUrl = (url) => {
  if (!url) return ""
  let u = url.replace(/^file:\/\//, "")
  if (u.startsWith(root)) u = u.slice(root.length)
  return u.replace(/^node_modules\//, "").replace(/^packages\/([^/]+)\/dist\//, "@warren/$1/")
}

// the source line of a frame in our own code, to name anonymous functions (Effect.gen bodies, callbacks)
const lineCache = new Map()
const sourceLine = (url, line) => {
  if (!url.startsWith("file://") || !url.includes("/packages/")) return ""
  const path = url.slice("file://".length)
  if (!lineCache.has(path)) {
    try {
      lineCache.set(path, readFileSync(path, "utf8").split("\n"))
    } catch {
      lineCache.set(path, [])
    }
  }
  const text = lineCache.get(path)[line]?.trim() ?? ""
  return text === "" ? "" : `  ← ${text.length > 70 ? text.slice(0, 70) + "..." : text}`
}

const area = (frame) => {
  const { functionName: fn, url } = frame
  if (fn === "(idle)") return "idle"
  if (fn === "(garbage collector)") return "GC"
  if (fn === "(program)") return "program (native, unattributed)"
  if (!url) return "native"
  if (url.includes("/packages/")) return "warren"
  if (url.includes("/node_modules/effect/")) return "effect"
  if (url.includes("/node_modules/amqplib/")) return "amqplib"
  if (url.includes("/node_modules/")) return "other deps"
  if (url.includes("/bench/")) return "bench harness"
  if (url.startsWith("node:")) return "node internals"
  return "other"
}

/** Reads one .cpuprofile and returns its summary. */
export const summarize = (path, { top = 15, lastMs } = {}) => {
  const profile = JSON.parse(readFileSync(path, "utf8"))
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  // with `lastMs`, only the samples of the profile's last `lastMs` milliseconds count (the measured window, not
  // the process start-up and warm-up)
  const times = []
  let t = profile.startTime
  for (const delta of profile.timeDeltas) times.push(t += delta)
  const from = lastMs === undefined ? -Infinity : profile.endTime - lastMs * 1000
  const hits = new Map()
  let totalSamples = 0
  profile.samples.forEach((s, i) => {
    if (times[i] < from) return
    hits.set(s, (hits.get(s) ?? 0) + 1)
    totalSamples++
  })
  const span = profile.endTime - Math.max(profile.startTime, from)
  const msPerSample = span / 1000 / Math.max(1, totalSamples)
  const keyOf = (frame) =>
    `${frame.functionName || "(anonymous)"} ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ""}`
      .trim() +
    (frame.functionName ? "" : sourceLine(frame.url, frame.lineNumber))
  const self = new Map()
  const inclusive = new Map()
  const areas = new Map()
  let idle = 0
  // depth-first over the call tree, keeping the multiset of keys on the current stack (so recursion counts once)
  const rootNode = profile.nodes[0]
  const onStack = new Map()
  const stack = [[rootNode, false]]
  while (stack.length > 0) {
    const [node, leaving] = stack.pop()
    const key = keyOf(node.callFrame)
    if (leaving) {
      const c = onStack.get(key) - 1
      if (c === 0) onStack.delete(key)
      else onStack.set(key, c)
      continue
    }
    onStack.set(key, (onStack.get(key) ?? 0) + 1)
    const h = hits.get(node.id) ?? 0
    if (h > 0) {
      const a = area(node.callFrame)
      areas.set(a, (areas.get(a) ?? 0) + h)
      if (a === "idle") idle += h
      else {
        self.set(key, (self.get(key) ?? 0) + h)
        for (const k of onStack.keys()) inclusive.set(k, (inclusive.get(k) ?? 0) + h)
      }
    }
    stack.push([node, true])
    for (const child of node.children ?? []) stack.push([byId.get(child), false])
  }
  const busy = totalSamples - idle
  const pct = (h) => (100 * h) / Math.max(1, busy)
  const rank = (m, keep = () => true) =>
    [...m.entries()]
      .filter(([k]) => !k.startsWith("(root)") && !k.startsWith("(idle)") && keep(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, h]) => ({ fn, pct: pct(h), ms: h * msPerSample }))
  return {
    file: basename(path),
    window: lastMs === undefined ? "whole process" : `last ${lastMs} ms`,
    busyMs: busy * msPerSample,
    idleMs: idle * msPerSample,
    areas: [...areas.entries()].filter(([a]) => a !== "idle").sort((a, b) => b[1] - a[1]).map(([name, h]) => ({
      area: name,
      pct: pct(h)
    })),
    self: rank(self),
    inclusive: rank(inclusive),
    warren: rank(inclusive, (k) => k.includes("@warren/"))
  }
}

const print = (s) => {
  const lines = []
  lines.push(`\n### ${s.file} (${s.window}): busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms`)
  lines.push(`areas (self time, % of busy): ${s.areas.map((a) => `${a.area} ${a.pct.toFixed(1)}%`).join(", ")}`)
  lines.push("top self time:")
  for (const r of s.self) lines.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${r.fn}`)
  lines.push("top inclusive time:")
  for (const r of s.inclusive) lines.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${r.fn}`)
  lines.push("warren functions by inclusive time:")
  for (const r of s.warren) lines.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${r.fn}`)
  return lines.join("\n")
}

/** Summarizes every .cpuprofile in `dir`, prints it and writes summary.txt beside them. */
export const summarizeProfiles = (dir, options = {}) => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).sort()
  const text = files.map((f) => print(summarize(join(dir, f), options))).join("\n")
  console.log(text)
  writeFileSync(join(dir, "summary.txt"), text + "\n")
  console.log(`\nwrote ${join(dir, "summary.txt")}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const options = {}
  const i = args.indexOf("--last-ms")
  if (i >= 0) options.lastMs = Number(args.splice(i, 2)[1])
  for (const arg of args) {
    if (statSync(arg).isDirectory()) summarizeProfiles(arg, options)
    else console.log(print(summarize(arg, options)))
  }
}
