/**
 * Faults against a `warren pb serve` process while a canary connection pings and does KV round trips: garbage,
 * random codes and mutated bodies, length edge cases, slowloris, idle connections, a client that pipelines and
 * never reads, disconnects in the middle of a stream. After each fault the server's RSS and file descriptors must
 * come back within a stated bound of their baseline, and no reply may be a defect (`Error processing ...`).
 */
import { randomBytes } from "node:crypto"
import {
  bytesField,
  connect,
  delay,
  frame,
  getBody,
  isDefect,
  listKeysBody,
  type PbProcess,
  putBody,
  type RawConnection,
  request,
  startCanary,
  startPbServer,
  varintField,
  write
} from "./Pb.js"
import type { Row } from "./Report.js"

/** Sizes of each fault: the full run (`npm run chaos`) and the bounded one (`npm test`). */
export interface PbScale {
  readonly garbageConnections: number
  readonly mutationsPerCode: number
  readonly slowlorisConnections: number
  readonly slowlorisSeconds: number
  readonly idleConnections: number
  readonly idleSeconds: number
  readonly pipelined: number
  readonly pipelineValueBytes: number
  readonly pipelineSeconds: number
  readonly streamDisconnects: number
}

export const fullPbScale: PbScale = {
  garbageConnections: 500,
  mutationsPerCode: 200,
  slowlorisConnections: 200,
  slowlorisSeconds: 20,
  idleConnections: 2_000,
  idleSeconds: 10,
  pipelined: 10_000,
  pipelineValueBytes: 64 * 1024,
  pipelineSeconds: 10,
  streamDisconnects: 1_000
}

export const boundedPbScale: PbScale = {
  garbageConnections: 50,
  mutationsPerCode: 20,
  slowlorisConnections: 200,
  slowlorisSeconds: 2,
  idleConnections: 500,
  idleSeconds: 1,
  pipelined: 10_000,
  pipelineValueBytes: 64 * 1024,
  pipelineSeconds: 2,
  streamDisconnects: 100
}

/**
 * RSS may stay this far above its baseline (measured idle, just after start) once a fault is over: V8 keeps heap it
 * grew, and the server's RSS under ordinary sustained load settles about 80 MiB above its idle start (the soak).
 */
export const RSS_BOUND = 96 * 1024 * 1024
/** While a client pipelines and never reads, the server's RSS may grow at most this much. */
export const PIPELINE_RSS_BOUND = 256 * 1024 * 1024
/** File descriptors may stay this far above their baseline once a fault is over. */
export const FD_BOUND = 4

interface FaultOutcome {
  readonly detail: string
  readonly defects: number
  readonly problems: ReadonlyArray<string>
  readonly peakRss?: number
}

const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`

/** Closes the connection and waits for the socket to be gone. */
const close = async (connection: RawConnection) => {
  connection.socket.destroy()
  await connection.closed
}

/** Runs `n` tasks with at most `parallel` at once. */
const inParallel = async (n: number, parallel: number, task: (i: number) => Promise<void>) => {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, async () => {
    while (next < n) await task(next++)
  }))
}

const defectsOf = (connections: ReadonlyArray<RawConnection>) =>
  connections.reduce((sum, c) => sum + c.errors.filter(isDefect).length, 0)

// ---------------------------------------------------------------------------------------------------------------
// The faults

/**
 * Riak's reply codes. Sent as requests, riak's service crashes on them and the client gets riak's
 * `Error processing incoming message`; warren (h/pb) sends the same text on purpose without a defect in the server.
 * So that text counts as a defect only as the reply to a request code; the server's log (no ERROR line) is the
 * check that holds for every frame.
 */
const REPLY_CODES = new Set([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 254])

const garbage = async (server: PbProcess, scale: PbScale): Promise<FaultOutcome> => {
  // Random bytes make frames of any code, reply codes included: the server's log is the defect check here.
  let crashTexts = 0
  let closedByServer = 0
  await inParallel(scale.garbageConnections, 10, async () => {
    const c = await connect(server.port)
    await write(c, randomBytes(1 + Math.floor(Math.random() * 16 * 1024)))
    await c.next(300)
    if (c.isClosed()) closedByServer++
    crashTexts += defectsOf([c])
    await close(c)
  })
  return {
    detail: `${scale.garbageConnections} conns of random bytes, ${closedByServer} closed by the server, ` +
      `${crashTexts} riak crash texts (reply codes sent as requests)`,
    defects: 0,
    problems: []
  }
}

/** Valid bodies of the requests `warren pb serve` answers, to mutate. */
const validBodies: Record<number, Buffer> = {
  1: Buffer.alloc(0),
  3: Buffer.alloc(0),
  5: bytesField(1, "client-1"),
  7: Buffer.alloc(0),
  9: getBody("chaos", "k"),
  11: putBody("chaos", "k", "v"),
  13: getBody("chaos", "k"),
  15: varintField(2, 0),
  17: listKeysBody("chaos"),
  19: bytesField(1, "chaos"),
  21: Buffer.concat([bytesField(1, "chaos"), bytesField(2, varintField(1, 3))]),
  29: bytesField(1, "chaos")
}

const mutate = (body: Buffer): Buffer => {
  const out = Buffer.from(body)
  switch (Math.floor(Math.random() * 5)) {
    case 0: // flip a byte
      if (out.length > 0) out[Math.floor(Math.random() * out.length)] = Math.floor(Math.random() * 256)
      return out
    case 1: // truncate
      return out.subarray(0, Math.floor(Math.random() * out.length))
    case 2: // append garbage
      return Buffer.concat([out, randomBytes(1 + Math.floor(Math.random() * 32))])
    case 3: // a field claiming a huge length
      return Buffer.concat([out, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])])
    default: // random bytes
      return randomBytes(Math.floor(Math.random() * 64))
  }
}

/**
 * Sends one frame of `code`, then a ping, and reads until the ping's reply (a ping probe expects two pongs), a
 * close, or 2 s.
 */
const probe = async (connection: RawConnection, code: number, body: Uint8Array): Promise<Array<string>> => {
  const start = connection.frames.length
  const mark = connection.errors.length
  const pongs = code === 1 ? 2 : 1
  await write(connection, Buffer.concat([frame(code, body), frame(1)]))
  const until = Date.now() + 2_000
  while (Date.now() < until && !connection.isClosed()) {
    if (connection.frames.slice(start).filter((f) => f.code === 2).length >= pongs) break
    await connection.next(50)
  }
  connection.skip()
  return connection.errors.slice(mark)
}

const randomCodes = async (server: PbProcess, scale: PbScale): Promise<FaultOutcome> => {
  // Which codes the server knows (registered requests, and responses it rejects): not "Unknown message code".
  let c = await connect(server.port)
  const all: Array<RawConnection> = [c]
  const registered: Array<number> = []
  const reconnect = async () => {
    if (c.isClosed()) {
      c = await connect(server.port)
      all.push(c)
    }
  }
  let defects = 0
  let crashTexts = 0
  const tally = (code: number, errors: ReadonlyArray<string>) => {
    const n = errors.filter(isDefect).length
    if (REPLY_CODES.has(code)) crashTexts += n
    else defects += n
  }
  for (let code = 0; code < 256; code++) {
    await reconnect()
    const errors = await probe(c, code, new Uint8Array())
    tally(code, errors)
    if (!errors.includes(`Unknown message code: ${code}`)) registered.push(code)
    await reconnect()
    tally(code, await probe(c, code, randomBytes(Math.floor(Math.random() * 16))))
  }
  let sent = 0
  for (const code of registered) {
    const base = validBodies[code] ?? Buffer.alloc(0)
    for (let i = 0; i < scale.mutationsPerCode; i++) {
      await reconnect()
      tally(code, await probe(c, code, mutate(base)))
      sent++
    }
  }
  await Promise.all(all.map(close))
  return {
    detail:
      `256 codes with random bodies; ${sent} mutated bodies for the ${registered.length} codes the server knows ` +
      `(${registered.join(",")}); ${all.length} conns; ${crashTexts} riak crash texts to reply codes sent as requests`,
    defects,
    problems: []
  }
}

const lengthEdges = async (server: PbProcess): Promise<FaultOutcome> => {
  const problems: Array<string> = []
  const all: Array<RawConnection> = []
  const header = (length: number) => {
    const out = Buffer.alloc(4)
    out.writeUInt32BE(length >>> 0, 0)
    return out
  }
  // 2^32 - 1 first: its error reply names the server's limit.
  const huge = await connect(server.port)
  all.push(huge)
  await write(huge, header(0xffffffff))
  const tooLarge = await huge.next(5_000)
  const limitText = huge.errors.find((e) => e.startsWith("Message too large"))
  const max = Number(/limit (\d+)/.exec(limitText ?? "")?.[1] ?? Number.NaN)
  if (tooLarge?.code !== 0 || Number.isNaN(max)) problems.push(`2^32-1: no "Message too large" reply (${limitText})`)
  const limit = Number.isNaN(max) ? 64 * 1024 * 1024 : max
  const cases: Array<[string, Buffer, (c: RawConnection) => string | undefined]> = [
    ["0", header(0), () => undefined],
    ["1 (ping)", frame(1), (c) => c.frames.some((f) => f.code === 2) ? undefined : "no ping reply"],
    ["max-1", Buffer.concat([header(limit - 1), Buffer.from([11]), randomBytes(1024)]), () => undefined],
    ["max", Buffer.concat([header(limit), Buffer.from([11]), randomBytes(1024)]), () => undefined],
    [
      "max+1",
      header(limit + 1),
      (c) => c.errors.some((e) => e.startsWith("Message too large")) ? undefined : "no error"
    ],
    [
      "2^31-1",
      header(0x7fffffff),
      (c) => c.errors.some((e) => e.startsWith("Message too large")) ? undefined : "no error"
    ]
  ]
  for (const [name, bytes, check] of cases) {
    const c = await connect(server.port)
    all.push(c)
    await write(c, bytes)
    await c.next(500)
    const problem = check(c)
    if (problem !== undefined) problems.push(`${name}: ${problem}`)
  }
  // A put and a ping, one byte per write.
  const split = await connect(server.port)
  all.push(split)
  const bytes = Buffer.concat([frame(11, putBody("chaos", "split", "one byte at a time")), frame(1)])
  for (const byte of bytes) {
    await write(split, Buffer.from([byte]))
    await delay(1)
  }
  const first = await split.next(5_000)
  const second = await split.next(5_000)
  if (first?.code !== 12 || second?.code !== 2) problems.push(`1-byte writes: replies ${first?.code}, ${second?.code}`)
  const defects = defectsOf(all)
  await Promise.all(all.map(close))
  return {
    detail: `limit ${limit}; 0, 1, max-1, max, max+1, 2^31-1, 2^32-1, a put in 1-byte writes`,
    defects,
    problems
  }
}

const slowloris = async (server: PbProcess, scale: PbScale): Promise<FaultOutcome> => {
  const all = await Promise.all(Array.from({ length: scale.slowlorisConnections }, () => connect(server.port)))
  const bytes = frame(11, putBody("chaos", "slow", "x".repeat(64)))
  for (let second = 0; second < scale.slowlorisSeconds; second++) {
    await Promise.all(all.map((c) => write(c, bytes.subarray(second, second + 1))))
    await delay(1_000)
  }
  const open = all.filter((c) => !c.isClosed()).length
  const defects = defectsOf(all)
  await Promise.all(all.map(close))
  return {
    detail: `${scale.slowlorisConnections} conns at 1 byte/s for ${scale.slowlorisSeconds} s (${open} still open)`,
    defects,
    problems: []
  }
}

const idle = async (server: PbProcess, scale: PbScale): Promise<FaultOutcome> => {
  const before = server.fds()
  const all: Array<RawConnection> = []
  for (let i = 0; i < scale.idleConnections; i += 100) {
    all.push(
      ...await Promise.all(Array.from({ length: Math.min(100, scale.idleConnections - i) }, () => connect(server.port)))
    )
  }
  // The first connection is served (a connection limit, if any, refuses the last ones, not the first).
  const pong = await request(all[0]!, 1, undefined, 10_000)
  await delay(scale.idleSeconds * 1_000)
  const during = server.fds()
  const rss = server.rss()
  const problems: Array<string> = []
  if (pong?.code !== 2) problems.push("the first idle connection got no ping reply")
  // Connections beyond a connection limit get "Too many connections" and are closed: a clear refusal.
  const refused = all.filter((c) => c.errors.includes("Too many connections")).length
  const dropped = all.filter((c) => c.isClosed() && !c.errors.includes("Too many connections")).length
  if (dropped > 0) problems.push(`${dropped} idle connections closed without a reason`)
  const defects = defectsOf(all)
  await Promise.all(all.map(close))
  return {
    detail: `${scale.idleConnections} idle conns for ${scale.idleSeconds} s: ${scale.idleConnections - refused} held ` +
      `(server fds ${before} -> ${during}, rss ${MiB(rss)}), ${refused} refused with "Too many connections"`,
    defects,
    problems,
    peakRss: rss
  }
}

const pipelineNoRead = async (server: PbProcess, scale: PbScale, baselineRss: number): Promise<FaultOutcome> => {
  const setup = await connect(server.port)
  const put = await request(setup, 11, putBody("chaos", "big", randomBytes(scale.pipelineValueBytes)), 10_000)
  await close(setup)
  const c = await connect(server.port, { read: false })
  const one = frame(9, getBody("chaos", "big"))
  const batch = Buffer.concat(Array.from({ length: 100 }, () => one))
  // The writes are not awaited (a client that never reads is blocked by the server's backpressure eventually).
  for (let i = 0; i < scale.pipelined; i += 100) c.socket.write(batch)
  let peak = server.rss()
  let aborted = false
  const until = Date.now() + scale.pipelineSeconds * 1_000
  while (Date.now() < until) {
    await delay(100)
    peak = Math.max(peak, server.rss())
    if (peak - baselineRss > PIPELINE_RSS_BOUND) {
      aborted = true
      break
    }
  }
  await close(c)
  const problems: Array<string> = []
  if (put?.code !== 12) problems.push("could not store the object")
  if (aborted) {
    problems.push(
      `server RSS grew by more than ${MiB(PIPELINE_RSS_BOUND)} (peak ${MiB(peak)}, baseline ${MiB(baselineRss)}): ` +
        "replies to a client that does not read are buffered without bound"
    )
  }
  return {
    detail: `${scale.pipelined} gets of a ${scale.pipelineValueBytes / 1024} KiB object, never read, ` +
      `${scale.pipelineSeconds} s: peak rss ${MiB(peak)}${aborted ? " (aborted)" : ""}`,
    defects: 0,
    problems,
    peakRss: peak
  }
}

const streamDisconnects = async (server: PbProcess, scale: PbScale): Promise<FaultOutcome> => {
  const setup = await connect(server.port)
  for (let i = 0; i < 200; i += 50) {
    await write(
      setup,
      Buffer.concat(Array.from({ length: 50 }, (_, j) => frame(11, putBody("chaos-stream", `key-${i + j}`, "v"))))
    )
  }
  while (setup.frames.length < 200 && !setup.isClosed()) await setup.next(5_000)
  await close(setup)
  let defects = 0
  let midStream = 0
  await inParallel(scale.streamDisconnects, 10, async (i) => {
    const c = await connect(server.port)
    await write(c, frame(17, listKeysBody("chaos-stream")))
    // Half leave after the first chunk of the stream, half before any.
    if (i % 2 === 0) {
      const first = await c.next(5_000)
      if (first?.code === 18) midStream++
    }
    defects += defectsOf([c])
    await close(c)
  })
  return {
    detail: `${scale.streamDisconnects} list-keys streams (200 keys) cut, ${midStream} after the first chunk`,
    defects,
    problems: []
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The run

/** Runs every PB fault against a fresh `warren pb serve`; one table row per fault. */
export const runPbFaults = async (scale: PbScale, log: (line: string) => void = () => {}): Promise<Array<Row>> => {
  const server = await startPbServer()
  const rows: Array<Row> = []
  try {
    const canary = await startCanary(server.port)
    await delay(1_000)
    const baselineRss = server.rss()
    const baselineFds = server.fds()
    log(`pb serve pid ${server.pid}: baseline rss ${MiB(baselineRss)}, ${baselineFds} fds`)
    const faults: Array<[string, () => Promise<FaultOutcome>]> = [
      ["pb: random bytes", () => garbage(server, scale)],
      ["pb: random codes, mutated bodies", () => randomCodes(server, scale)],
      ["pb: length edge cases", () => lengthEdges(server)],
      [`pb: slowloris (${scale.slowlorisConnections} conns)`, () => slowloris(server, scale)],
      [`pb: ${scale.idleConnections} idle conns`, () => idle(server, scale)],
      [`pb: ${scale.streamDisconnects} mid-stream disconnects`, () => streamDisconnects(server, scale)],
      // Last: on a server without backpressure its memory does not come back soon, which would fail the next rows.
      [`pb: pipeline ${scale.pipelined}, never read`, () => pipelineNoRead(server, scale, baselineRss)]
    ]
    let loggedBefore = server.output().split("\n").filter((line) => /\bERROR\b/.test(line)).length
    for (const [name, fault] of faults) {
      const started = Date.now()
      const outcome: FaultOutcome = await fault().catch((error: unknown): FaultOutcome => ({
        detail: "the fault itself failed",
        defects: 0,
        problems: [`fault error: ${error instanceof Error ? error.message : String(error)}`]
      }))
      // Wait (bounded) for the server to release what the fault took.
      const settleUntil = Date.now() + 15_000
      let rss = server.rss()
      let fds = server.fds()
      while (Date.now() < settleUntil && (rss - baselineRss > RSS_BOUND || fds - baselineFds > FD_BOUND)) {
        await delay(250)
        rss = server.rss()
        fds = server.fds()
      }
      const problems = [...outcome.problems]
      const logged = server.output().split("\n").filter((line) => /\bERROR\b/.test(line))
      if (logged.length > loggedBefore) {
        problems.push(
          `the server logged ${logged.length - loggedBefore} errors: ${logged[loggedBefore]?.slice(0, 200)}`
        )
      }
      loggedBefore = logged.length
      if (server.exit() !== undefined) problems.push(`the server exited: ${JSON.stringify(server.exit())}`)
      if (outcome.defects > 0) problems.push(`${outcome.defects} defect replies`)
      if (rss - baselineRss > RSS_BOUND) {
        problems.push(`rss ${MiB(rss)} stays above baseline ${MiB(baselineRss)} + ${MiB(RSS_BOUND)}`)
      }
      if (fds - baselineFds > FD_BOUND) problems.push(`${fds} fds stay above baseline ${baselineFds} + ${FD_BOUND}`)
      rows.push({
        fault: name,
        seconds: (Date.now() - started) / 1000,
        detail: outcome.detail,
        figures:
          `rss ${MiB(baselineRss)} -> ${MiB(rss)}${
            outcome.peakRss === undefined ? "" : ` (peak ${MiB(outcome.peakRss)})`
          }, ` +
          `fds ${baselineFds} -> ${fds}, defects ${outcome.defects}`,
        problems
      })
      log(`${name}: ${problems.length === 0 ? "ok" : problems.join("; ")}`)
      if (server.exit() !== undefined) break
    }
    const report = await canary.stop()
    rows.push({
      fault: "pb: canary (during all of the above)",
      seconds: 0,
      detail: `${report.rounds} rounds of ping + put + get`,
      figures: `slowest round ${report.maxRoundMs} ms`,
      problems: report.failures.slice(0, 5)
    })
  } finally {
    await server.stop("SIGTERM")
  }
  return rows
}
