/**
 * KV durability across process deaths, through `warren pb serve --data-file F` with the write-ahead log's sync
 * policy from `WARREN_KV_SYNC` (always | interval | none): 1,000 acknowledged writes, SIGTERM, restart: all
 * readable; 1,000 more, SIGKILL, restart: all readable under `always`, all but the last interval's worth under
 * `interval`; a log whose tail was cut (a torn last write) still loads.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { connect, delay, frame, getBody, getRespValue, type PbProcess, putBody, startPbServer, write } from "./Pb.js"
import type { Row } from "./Report.js"

/** Sizes of the run. */
export interface KvScale {
  readonly writes: number
  readonly modes: ReadonlyArray<"always" | "interval">
}

export const fullKvScale: KvScale = { writes: 1_000, modes: ["always", "interval"] }
export const boundedKvScale: KvScale = { writes: 200, modes: ["always", "interval"] }

/** The interval of `WARREN_KV_SYNC=interval` the suite runs with (`WARREN_KV_SYNC_INTERVAL`, ms). */
export const SYNC_INTERVAL_MS = 200
/** Slack on "the last interval's worth" for a busy machine (a sync may run late). */
const INTERVAL_SLACK_MS = 500

/**
 * Writes `keys` (pipelined, `keys.length / 20` at a time, 50 ms apart, so that the writes span a second or more);
 * returns when each was acknowledged (Date.now()), by key.
 */
const putAll = async (server: PbProcess, keys: ReadonlyArray<string>) => {
  const c = await connect(server.port, { keep: false })
  const acked = new Map<string, number>()
  const size = Math.max(1, Math.ceil(keys.length / 20))
  for (let i = 0; i < keys.length; i += size) {
    if (i > 0) await delay(50)
    const batch = keys.slice(i, i + size)
    await write(c, Buffer.concat(batch.map((key) => frame(11, putBody("chaos-kv", key, `value-of-${key}`)))))
    for (const key of batch) {
      const reply = await c.next(10_000)
      if (reply?.code === 12) acked.set(key, Date.now())
    }
  }
  c.socket.destroy()
  return acked
}

/** The keys of `keys` that read back with their value. */
const readable = async (server: PbProcess, keys: ReadonlyArray<string>) => {
  const c = await connect(server.port, { keep: false })
  const ok = new Set<string>()
  for (let i = 0; i < keys.length; i += 100) {
    const batch = keys.slice(i, i + 100)
    await write(c, Buffer.concat(batch.map((key) => frame(9, getBody("chaos-kv", key)))))
    for (const key of batch) {
      const reply = await c.next(10_000)
      if (reply?.code === 10 && getRespValue(reply.body)?.toString("utf8") === `value-of-${key}`) ok.add(key)
    }
  }
  c.socket.destroy()
  return ok
}

const keysOf = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)

/** One sync mode: the three checks, one row each. */
const runMode = async (
  mode: "always" | "interval",
  scale: KvScale,
  log: (line: string) => void
): Promise<Array<Row>> => {
  const dir = mkdtempSync(join(tmpdir(), "warren-chaos-kv-"))
  const dataFile = join(dir, "kv.data")
  const env = { WARREN_KV_SYNC: mode, WARREN_KV_SYNC_INTERVAL: `${SYNC_INTERVAL_MS} millis` }
  const start = () => startPbServer(["--data-file", dataFile], env)
  const rows: Array<Row> = []
  try {
    // 1. Acknowledged writes, SIGTERM, restart.
    let started = Date.now()
    let server = await start()
    const first = keysOf("a", scale.writes)
    const ackedA = await putAll(server, first)
    const term = await server.stop("SIGTERM")
    server = await start()
    let back = await readable(server, [...ackedA.keys()])
    rows.push({
      fault: `kv (${mode}): ${scale.writes} writes, SIGTERM, restart`,
      seconds: (Date.now() - started) / 1000,
      detail: `exit ${term.code ?? term.signal}`,
      figures: `${ackedA.size} acknowledged, ${back.size} readable after restart`,
      problems: [
        ...(ackedA.size < scale.writes ? [`only ${ackedA.size} writes acknowledged`] : []),
        ...(back.size < ackedA.size ? [`${ackedA.size - back.size} acknowledged writes lost`] : [])
      ]
    })
    log(`kv ${mode}: SIGTERM: ${back.size}/${ackedA.size}`)

    // 2. More writes, SIGKILL right after the last acknowledgement, restart.
    started = Date.now()
    const second = keysOf("b", scale.writes)
    const ackedB = await putAll(server, second)
    await server.stop("SIGKILL")
    const killedAt = Date.now()
    server = await start()
    back = await readable(server, [...ackedA.keys(), ...ackedB.keys()])
    const lost = [...ackedA.keys(), ...ackedB.keys()].filter((key) => !back.has(key))
    const lostEarly = lost.filter((key) =>
      (ackedA.get(key) ?? ackedB.get(key)!) < killedAt - SYNC_INTERVAL_MS - INTERVAL_SLACK_MS
    )
    rows.push({
      fault: `kv (${mode}): ${scale.writes} more writes, SIGKILL, restart`,
      seconds: (Date.now() - started) / 1000,
      detail: mode === "always"
        ? "every acknowledged write must survive"
        : `sync interval ${SYNC_INTERVAL_MS} ms: all but the last interval's worth must survive`,
      figures: `${
        ackedA.size + ackedB.size
      } acknowledged, ${back.size} readable, ${lost.length} lost (${lostEarly.length} acknowledged more than an interval + ${INTERVAL_SLACK_MS} ms before the kill)`,
      problems: mode === "always"
        ? lost.length > 0 ? [`${lost.length} acknowledged writes lost`] : []
        : lostEarly.length > 0
        ? [`${lostEarly.length} writes older than an interval lost`]
        : []
    })
    log(`kv ${mode}: SIGKILL: ${back.size}/${ackedA.size + ackedB.size}`)

    // 3. A torn last write: a few more writes, SIGKILL, cut the tail of the newest file, restart.
    started = Date.now()
    const third = keysOf("c", 10)
    await putAll(server, third)
    await server.stop("SIGKILL")
    const newest = readdirSync(dir)
      .map((name) => ({ path: join(dir, name), stat: statSync(join(dir, name)) }))
      .filter((f) => f.stat.isFile() && f.stat.size > 8)
      .sort((x, y) => y.stat.mtimeMs - x.stat.mtimeMs)[0]
    const problems: Array<string> = []
    let cut = ""
    if (newest === undefined) problems.push("no data file was written")
    else {
      // Cut into the last record: a log may be preallocated (zero-filled), so the file's end can be padding.
      const bytes = readFileSync(newest.path)
      let end = bytes.length
      while (end > 0 && bytes[end - 1] === 0) end--
      truncateSync(newest.path, Math.max(0, end - 5))
      cut = `${
        newest.path.split("/").pop()
      } cut to 5 bytes before the end of its data (${end} of ${bytes.length} bytes)`
    }
    const restarted = await start().then(
      (s) => s,
      (error: unknown) => error instanceof Error ? error : new Error(String(error))
    )
    let readBack = 0
    if (restarted instanceof Error) problems.push(`did not start: ${restarted.message.slice(0, 200)}`)
    else {
      server = restarted
      readBack = (await readable(server, [...ackedA.keys(), ...ackedB.keys(), ...third])).size
      const expected = mode === "always" ? ackedA.size + ackedB.size + third.length - 1 : ackedA.size
      if (readBack < expected) problems.push(`only ${readBack} objects readable (expected at least ${expected})`)
    }
    rows.push({
      fault: `kv (${mode}): truncated log tail`,
      seconds: (Date.now() - started) / 1000,
      detail: `after SIGKILL, ${cut === "" ? "nothing to cut" : cut}`,
      figures: `${readBack} objects readable after restart`,
      problems
    })
    await server.stop("SIGTERM")
  } catch (error) {
    rows.push({
      fault: `kv (${mode})`,
      seconds: 0,
      detail: "the run failed",
      figures: "",
      problems: [error instanceof Error ? error.message.slice(0, 300) : String(error)]
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return rows
}

/** Runs the KV checks for each sync mode of `scale`, the modes side by side (each with its own server and files). */
export const runKvFaults = async (scale: KvScale, log: (line: string) => void = () => {}): Promise<Array<Row>> =>
  (await Promise.all(scale.modes.map((mode) => runMode(mode, scale, log)))).flat()
