import { assert, describe, it } from "@effect/vitest"
import { EmbeddedBackend, type KvMessages, KvStore } from "@warren/kv"
import { Effect, Exit, Layer, Logger, Metric, Option, Scope, TestClock } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as wal from "../src/internal/wal.js"
import { exited, lineMatching, spawnFixture, outputOf } from "./support/child.js"
import { conformance } from "./support/conformance.js"
import { call, connect } from "./support/pbClient.js"

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (
  b: Uint8Array | undefined
): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b))

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "warren-kv-wal-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A backend on a fresh data file in a fresh directory, for the conformance suite. */
const onDisk = (sync: "always" | "none") => (options: { listBatchSize: number; listBatchBytes: number }) =>
  Layer.unwrapScoped(
    Effect.map(tempDir, (dir) => EmbeddedBackend.layer({ ...options, dataFile: path.join(dir, "kv"), sync }))
  )

conformance("EmbeddedBackend (memory only)", (options) => EmbeddedBackend.layer(options))
conformance("EmbeddedBackend (data file, sync always)", onDisk("always"))
conformance("EmbeddedBackend (data file, sync none)", onDisk("none"))

const bucket = { bucket: enc("b") }
const at = (key: string) => ({ bucket: enc("b"), key: enc(key) })
const valueOf = (store: KvStore.KvStore["Type"], key: string) =>
  Effect.map(store.get(at(key)), Option.map((o) => dec(o.content.value)))

const count = (metric: typeof EmbeddedBackend.metrics.fsyncs) =>
  Effect.map(Metric.value(metric), (state) => Number(state.count))

/** The store on `dataFile` in a scope of its own, closed by the returned effect (a clean stop). */
const open = (options: KvStore.Options) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const store = yield* Scope.extend(KvStore.make(options), scope)
    return { store, close: Scope.close(scope, Exit.void) }
  })

const segments = (dataFile: string) => Effect.promise(() => wal.listSegments(dataFile))

/** Polls (yielding to the event loop, no timer) until `condition` holds; for real I/O under the TestClock. */
const eventually = (condition: Effect.Effect<boolean>, what: string) =>
  Effect.gen(function*() {
    // Bounded by wall time (real file I/O on a loaded machine can take seconds), not by a sleep.
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      if (yield* condition) return
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    }
    assert.fail(`never happened: ${what}`)
  })

describe("EmbeddedBackend write-ahead log", () => {
  it.scopedLive("a write is in the log on disk when it is acknowledged, before any snapshot", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const { store } = yield* open({ dataFile })
      yield* store.put(bucket, enc("k"), { value: enc("v1") })
      yield* store.put(bucket, enc("k"), { value: enc("v2") })
      yield* store.put(bucket, enc("gone"), { value: enc("x") })
      yield* store.delete(at("gone"))
      assert.isFalse(fs.existsSync(dataFile), "no snapshot yet")
      const ops: Array<wal.LogOp> = []
      for (const segment of yield* segments(dataFile)) {
        const result = yield* Effect.promise(() => wal.read(segment.path, (op) => ops.push(op)))
        assert.isUndefined(result.problem)
      }
      assert.deepStrictEqual(
        ops.map((op) =>
          op._tag === "Put"
            ? `put ${dec(op.entry.key)}=${dec(op.entry.content.value)}`
            : op._tag === "Remove"
            ? `remove ${dec(op.address.key)}`
            : `bucket props ${dec(op.bucket)}`
        ),
        ["put k=v1", "put k=v2", "put gone=x", "remove gone"]
      )
    }))

  it.scopedLive("a clean stop compacts the log into the snapshot; a restart has everything", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const first = yield* open({ dataFile })
      const generated = yield* first.store.put(bucket, undefined, { value: enc("g") })
      yield* first.store.put(bucket, enc("k"), { value: enc("1") })
      const last = yield* first.store.put(bucket, enc("k"), { value: enc("2") })
      yield* first.store.put(bucket, enc("d"), { value: enc("x") })
      yield* first.store.delete(at("d"))
      yield* first.close
      assert.isTrue(fs.existsSync(dataFile))
      assert.isFalse(fs.existsSync(`${dataFile}.lock`), "the lock is released")
      // Only the segment opened after the final snapshot is left, and it holds no records (only zeros
      // allocated ahead, which are the clean end of the log).
      const left = yield* segments(dataFile)
      assert.strictEqual(left.length, 1)
      const read = yield* Effect.promise(() => wal.read(left[0]!.path, () => undefined))
      assert.deepStrictEqual([read.records, read.validBytes, read.problem], [0, wal.magic.length, undefined])

      const { store } = yield* open({ dataFile })
      assert.deepStrictEqual(yield* valueOf(store, "k"), Option.some("2"))
      assert.deepStrictEqual(yield* valueOf(store, dec(generated.key)!), Option.some("g"))
      assert.isTrue(Option.isNone(yield* store.get(at("d"))))
      const k = Option.getOrThrow(yield* store.get(at("k")))
      assert.deepStrictEqual(Buffer.from(k.vclock), Buffer.from(last.object.vclock))
      assert.strictEqual((yield* store.usage).objects, 2)
      // The empty segment of the previous run is gone: only this run's is left.
      assert.strictEqual((yield* segments(dataFile)).length, 1)
    }))

  it.scopedLive("many concurrent puts share fsyncs (group commit) and all are acknowledged", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { store } = yield* open({ dataFile: path.join(dir, "kv"), sync: "always" })
      const fsyncs = yield* count(EmbeddedBackend.metrics.fsyncs)
      const records = yield* count(EmbeddedBackend.metrics.records)
      const puts = 400
      yield* Effect.all(
        Array.from({ length: puts }, (_, i) => store.put(bucket, enc(`k${i}`), { value: enc(String(i)) })),
        { concurrency: "unbounded", discard: true }
      )
      const usedFsyncs = (yield* count(EmbeddedBackend.metrics.fsyncs)) - fsyncs
      assert.strictEqual((yield* count(EmbeddedBackend.metrics.records)) - records, puts)
      assert.isAtLeast(usedFsyncs, 1)
      assert.isBelow(usedFsyncs, puts / 4, `${usedFsyncs} fsyncs for ${puts} puts`)
    }))

  it.scoped("sync interval: acknowledged after the write, fsynced every syncInterval (TestClock)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const { store } = yield* open({ dataFile: path.join(dir, "kv"), sync: "interval", syncInterval: "1 second" })
      const fsyncs = () => Effect.map(count(EmbeddedBackend.metrics.fsyncs), (n) => n - before)
      const before = yield* count(EmbeddedBackend.metrics.fsyncs)
      for (let i = 0; i < 10; i++) yield* store.put(bucket, enc(`k${i}`), { value: enc("v") })
      assert.strictEqual(yield* fsyncs(), 0)
      yield* TestClock.adjust("999 millis")
      assert.strictEqual(yield* fsyncs(), 0)
      yield* TestClock.adjust("1 millis")
      yield* eventually(Effect.map(fsyncs(), (n) => n === 1), "the interval fsync")
      // Nothing written since: the next tick does not fsync.
      yield* TestClock.adjust("1 second")
      yield* store.put(bucket, enc("after"), { value: enc("v") })
      yield* TestClock.adjust("1 second")
      yield* eventually(Effect.map(fsyncs(), (n) => n === 2), "the second interval fsync")
    }))

  it.scopedLive("sync none: acknowledged after the write, never fsynced per write", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const { store } = yield* open({ dataFile, sync: "none" })
      const before = yield* count(EmbeddedBackend.metrics.fsyncs)
      for (let i = 0; i < 50; i++) yield* store.put(bucket, enc(`k${i}`), { value: enc("v") })
      assert.strictEqual((yield* count(EmbeddedBackend.metrics.fsyncs)) - before, 0)
      // Written to the OS, so readable from the file already.
      let records = 0
      for (const s of yield* segments(dataFile)) yield* Effect.promise(() => wal.read(s.path, () => records++))
      assert.strictEqual(records, 50)
    }))

  it.scopedLive("the log past logMaxBytes triggers a snapshot that drops the segments it holds", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const first = yield* open({ dataFile, logMaxBytes: 16 * 1024 })
      for (let i = 0; i < 200; i++) {
        yield* first.store.put(bucket, enc(`k${i % 20}`), { value: new Uint8Array(500).fill(i) })
      }
      yield* eventually(Effect.sync(() => fs.existsSync(dataFile)), "a snapshot")
      // Every segment the snapshot holds is removed: what is left starts after the first segment.
      yield* eventually(Effect.map(segments(dataFile), (s) => s[0]!.generation > 1), "old segments removed")
      yield* first.close
      const { store } = yield* open({ dataFile })
      assert.strictEqual((yield* store.usage).objects, 20)
      const k19 = Option.getOrThrow(yield* store.get(at("k19")))
      assert.strictEqual(k19.content.value[0], 199)
    }))
})

/** Writes a segment file by hand: the magic, then `records`, then `tail` (bytes of a torn write). */
const writeSegment = (
  dataFile: string,
  generation: number,
  records: ReadonlyArray<Uint8Array>,
  tail: Uint8Array = new Uint8Array(0)
) => fs.writeFileSync(wal.segmentPath(dataFile, generation), Buffer.concat([wal.magic, ...records, tail]))

const putRecord = (key: string, value: string, vclock = key + value) =>
  wal.encodeRecord({
    _tag: "Put",
    entry: {
      type: enc("default"),
      bucket: enc("b"),
      key: enc(key),
      vclock: enc(vclock),
      content: { value: enc(value), vtag: enc("t"), lastMod: 1, lastModUsecs: 0 }
    }
  })

/** A logger layer that records the messages. */
const capture = (logs: Array<string>) =>
  Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logs.push(String(message))))

describe("EmbeddedBackend recovery", () => {
  it.scopedLive("a torn last record is dropped with a warning; everything before it is kept", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const whole = [putRecord("a", "1"), putRecord("b", "2"), putRecord("a", "3")]
      const torn = putRecord("c", "4")
      // Cut inside the length, after the header, one byte short. (A cut before the first non-zero byte
      // of the length leaves only zeros: the clean end of an allocated segment, see below.)
      for (const cut of [4, 8, torn.length - 1]) {
        fs.rmSync(dir, { recursive: true, force: true })
        fs.mkdirSync(dir)
        writeSegment(dataFile, 1, whole, torn.subarray(0, cut))
        const logs: Array<string> = []
        const { close, store } = yield* open({ dataFile }).pipe(Effect.provide(capture(logs)))
        assert.isTrue(
          logs.some((l) => /dropped the torn end of the write-ahead log .* after 3 whole records/.test(l)),
          logs.join("\n")
        )
        assert.deepStrictEqual(yield* valueOf(store, "a"), Option.some("3"))
        assert.deepStrictEqual(yield* valueOf(store, "b"), Option.some("2"))
        assert.isTrue(Option.isNone(yield* store.get(at("c"))))
        // The torn bytes are gone from the file, so new records follow whole ones.
        const size = wal.magic.length + whole.reduce((n, r) => n + r.length, 0)
        assert.strictEqual(fs.statSync(wal.segmentPath(dataFile, 1)).size, size)
        yield* store.put(bucket, enc("c"), { value: enc("new") })
        yield* close
        const again = yield* open({ dataFile })
        assert.deepStrictEqual(yield* valueOf(again.store, "c"), Option.some("new"))
        assert.deepStrictEqual(yield* valueOf(again.store, "a"), Option.some("3"))
        yield* again.close
      }
    }))

  it.scopedLive("zeros after the last record are the clean end of a segment allocated ahead", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      writeSegment(dataFile, 1, [putRecord("a", "1"), putRecord("b", "2")], new Uint8Array(100_000))
      writeSegment(dataFile, 2, [putRecord("c", "3")], new Uint8Array(10))
      const logs: Array<string> = []
      const { store } = yield* open({ dataFile }).pipe(Effect.provide(capture(logs)))
      assert.deepStrictEqual(
        [yield* valueOf(store, "a"), yield* valueOf(store, "b"), yield* valueOf(store, "c")],
        [Option.some("1"), Option.some("2"), Option.some("3")]
      )
      assert.isFalse(logs.some((l) => l.includes("torn")), logs.join("\n"))
      // A record header followed by zeros is a torn write, not a clean end.
      const record = putRecord("d", "4")
      fs.writeFileSync(
        wal.segmentPath(dataFile, 9),
        Buffer.concat([wal.magic, record.subarray(0, 8), new Uint8Array(100)])
      )
      const read = yield* Effect.promise(() => wal.read(wal.segmentPath(dataFile, 9), () => undefined))
      assert.strictEqual(read.problem, "a record fails its checksum")
    }))

  it.scopedLive("a last record that fails its checksum is dropped too; one in an older segment fails the start", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const damaged = Buffer.from(putRecord("b", "2"))
      damaged[damaged.length - 1] = damaged[damaged.length - 1]! ^ 0x01
      writeSegment(dataFile, 1, [putRecord("a", "1"), damaged])
      const first = yield* open({ dataFile })
      assert.deepStrictEqual(yield* valueOf(first.store, "a"), Option.some("1"))
      assert.isTrue(Option.isNone(yield* first.store.get(at("b"))))
      yield* first.close

      fs.rmSync(dir, { recursive: true, force: true })
      fs.mkdirSync(dir)
      writeSegment(dataFile, 1, [putRecord("a", "1"), damaged, putRecord("c", "3")])
      writeSegment(dataFile, 2, [putRecord("d", "4")])
      const error = yield* Effect.flip(KvStore.make({ dataFile }))
      assert.strictEqual(error._tag, "LogError")
      if (error._tag === "LogError") {
        assert.strictEqual(error.reason, "Corrupt")
        assert.match(error.message, /write-ahead log .*wal-000000000001 is damaged: a record fails its checksum/)
      }
      // The failed start released the lock: fixing the file lets the next start succeed.
      assert.isFalse(fs.existsSync(`${dataFile}.lock`))
    }))

  it.scopedLive("segments a snapshot already holds are removed at start, never replayed over it", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const first = yield* open({ dataFile })
      yield* first.store.put(bucket, enc("k"), { value: enc("new") })
      yield* first.store.delete(at("k"))
      yield* first.store.put(bucket, enc("k"), { value: enc("newest") })
      yield* first.close
      const [current] = yield* segments(dataFile)
      // What a crash between the snapshot's rename and the removal of old segments leaves behind.
      writeSegment(dataFile, current!.generation - 1, [putRecord("k", "old"), putRecord("x", "resurrected")])
      const { store } = yield* open({ dataFile })
      assert.deepStrictEqual(yield* valueOf(store, "k"), Option.some("newest"))
      assert.isTrue(Option.isNone(yield* store.get(at("x"))))
      assert.deepStrictEqual(
        (yield* segments(dataFile)).map((s) => s.generation).includes(current!.generation - 1),
        false
      )
    }))

  it.scopedLive("a segment whose header is torn (crash while creating it) is removed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      writeSegment(dataFile, 1, [putRecord("a", "1")])
      fs.writeFileSync(wal.segmentPath(dataFile, 2), wal.magic.subarray(0, 3))
      const { store } = yield* open({ dataFile })
      assert.deepStrictEqual(yield* valueOf(store, "a"), Option.some("1"))
      assert.isFalse(fs.existsSync(wal.segmentPath(dataFile, 2)))
    }))
})

describe("EmbeddedBackend lock", () => {
  it.scopedLive("a second store on the same files fails at once with StoreLocked; after a stop it opens", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      const first = yield* open({ dataFile })
      yield* first.store.put(bucket, enc("k"), { value: enc("first") })
      const error = yield* Effect.flip(KvStore.make({ dataFile }))
      assert.strictEqual(error._tag, "StoreLocked")
      if (error._tag === "StoreLocked") {
        assert.strictEqual(error.pid, process.pid)
        assert.match(error.message, /in use by process \d+ on .* \(lock file .*kv\.lock\)/)
      }
      // The failed second store touched nothing: the first one's data and lock are intact.
      assert.deepStrictEqual(yield* valueOf(first.store, "k"), Option.some("first"))
      assert.isTrue(fs.existsSync(`${dataFile}.lock`))
      yield* first.close
      const second = yield* open({ dataFile })
      assert.deepStrictEqual(yield* valueOf(second.store, "k"), Option.some("first"))
    }))

  it.scopedLive("a stale lock (its process is gone, or its pid now belongs to another process) is taken over", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv")
      // pid 2147483646 cannot be a running process.
      fs.writeFileSync(`${dataFile}.lock`, JSON.stringify({ pid: 2147483646, host: os.hostname(), start: "1" }))
      const logs: Array<string> = []
      const first = yield* open({ dataFile }).pipe(Effect.provide(capture(logs)))
      assert.isTrue(logs.some((l) => l.includes("took over the stale lock of process 2147483646")))
      yield* first.close
      // Our own pid with another start time: a restarted container that got the same pid.
      fs.writeFileSync(`${dataFile}.lock`, JSON.stringify({ pid: process.pid, host: os.hostname(), start: "0" }))
      const second = yield* open({ dataFile })
      yield* second.close
      // Damaged lock files are never written by a holder (it links a complete file): stale.
      fs.writeFileSync(`${dataFile}.lock`, "{")
      const third = yield* open({ dataFile })
      yield* third.close
      // A lock from another host cannot be checked: it holds.
      fs.writeFileSync(`${dataFile}.lock`, JSON.stringify({ pid: 1, host: `not-${os.hostname()}`, start: "" }))
      const error = yield* Effect.flip(KvStore.make({ dataFile }))
      assert.strictEqual(error._tag, "StoreLocked")
    }))
})

describe("EmbeddedBackend crash (SIGKILL of a real server)", () => {
  const startChild = (dataFile: string, sync: string) =>
    Effect.gen(function*() {
      const child = yield* spawnFixture("kvServer.ts", [dataFile, sync])
      const port = Number(yield* lineMatching(child, /^\d+$/))
      return { child, port }
    })

  const put = (key: string, value: string): KvMessages.KvRequest => ({
    _tag: "RpbPutReq",
    bucket: enc("b"),
    key: enc(key),
    content: { value: enc(value) }
  })

  // `always`: on disk when acknowledged. `interval` and `none`: in the OS when acknowledged, which a killed
  // process cannot lose (only a machine crash can).
  it.scopedLive.each(["always", "interval", "none"])(
    "sync %s: every acknowledged write survives kill -9 (1,000 of 1,000)",
    (sync) =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const dataFile = path.join(dir, "kv")
        const { child, port } = yield* startChild(dataFile, sync)
        const acknowledged = new Map<string, string>()
        const clients = 8
        const perClient = 250
        // 2,000 puts in flight from 8 connections; the server is killed as soon as 1,000 are acknowledged.
        const killed = yield* Effect.makeLatch(false)
        yield* Effect.forEach(Array.from({ length: clients }, (_, c) => c), (c) =>
          Effect.gen(function*() {
            const conn = yield* connect(port)
            for (let i = 0; i < perClient; i++) {
              const key = `c${c}-${i}`
              const value = `value of ${key}`
              const reply = yield* Effect.raceFirst(
                call(conn, put(key, value)),
                killed.await.pipe(Effect.as(undefined))
              )
              if (reply === undefined || reply._tag !== "RpbPutResp") return
              acknowledged.set(key, value)
              if (acknowledged.size === 1000) {
                child.kill("SIGKILL")
                yield* killed.open
              }
            }
          }), { concurrency: "unbounded", discard: true })
        const exit = yield* exited(child)
        assert.strictEqual(exit.signal, "SIGKILL")
        assert.isAtLeast(acknowledged.size, 1000)
        assert.isFalse(fs.existsSync(dataFile), "no snapshot was written: everything comes from the log")

        const { store } = yield* open({ dataFile })
        let readable = 0
        for (const [key, value] of acknowledged) {
          if (Option.getOrUndefined(yield* valueOf(store, key)) === value) readable++
        }
        assert.strictEqual(
          readable,
          acknowledged.size,
          `${readable} of ${acknowledged.size} acknowledged writes readable`
        )
      }),
    60_000
  )

  it.scopedLive(
    "a second server on the same data file exits at once naming the lock; the first keeps serving",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const dataFile = path.join(dir, "kv")
        const first = yield* startChild(dataFile, "always")
        const second = yield* spawnFixture("kvServer.ts", [dataFile, "always"])
        const [output, exit] = yield* Effect.all([outputOf(second), exited(second)], { concurrency: 2 })
        assert.notStrictEqual(exit.code, 0)
        assert.match(output, new RegExp(`in use by process ${first.child.pid}`))
        const conn = yield* connect(first.port)
        const reply = yield* call(conn, put("fromA", "a"))
        assert.strictEqual(reply._tag, "RpbPutResp")
        // A stale lock after kill -9 does not block a restart.
        first.child.kill("SIGKILL")
        yield* exited(first.child)
        const restarted = yield* startChild(dataFile, "always")
        const again = yield* connect(restarted.port)
        const got = yield* call(again, { _tag: "RpbGetReq", bucket: enc("b"), key: enc("fromA") })
        assert.strictEqual(got._tag, "RpbGetResp")
        if (got._tag === "RpbGetResp") assert.strictEqual(dec(got.content?.[0]?.value), "a")
      }),
    60_000
  )
})
