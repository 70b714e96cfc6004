import { assert, describe, it } from "@effect/vitest"
import { type KvError, KvStore } from "@warren/kv"
import { ConfigProvider, Duration, Effect, Either, Exit, Option, Stream, TestClock } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as snapshotFile from "../src/internal/snapshot.js"
import { viteNode } from "./support/child.js"

const enc = (s: string): Uint8Array => new TextEncoder().encode(s)
const dec = (
  b: Uint8Array | undefined
): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b))

const bucket = { bucket: enc("b") }
const at = (key: string, type?: string) =>
  type === undefined ? { bucket: enc("b"), key: enc(key) } : { type: enc(type), bucket: enc("b"), key: enc(key) }

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "warren-kv-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const getValue = (store: KvStore.KvStore["Type"], key: string) =>
  Effect.map(store.get(at(key)), Option.map((o) => dec(o.content.value)))

describe("KvStore (in memory)", () => {
  it.scoped("stores content with server-set metadata from the clock", () =>
    Effect.gen(function*() {
      const store = yield* KvStore.make()
      yield* TestClock.adjust("1500 millis")
      const result = yield* store.put(bucket, enc("k"), {
        value: enc("hello"),
        contentType: enc("text/plain"),
        charset: enc("utf-8"),
        contentEncoding: enc("identity"),
        usermeta: [{ key: enc("m"), value: enc("1") }],
        indexes: [{ key: enc("idx_bin"), value: enc("x") }],
        links: [{ bucket: enc("o"), key: enc("k2"), tag: enc("t") }]
      })
      assert.isFalse(result.generatedKey)
      assert.strictEqual(dec(result.key), "k")
      const got = yield* store.get(at("k"))
      assert.isTrue(Option.isSome(got))
      const object = Option.getOrThrow(got)
      assert.strictEqual(dec(object.content.value), "hello")
      assert.strictEqual(dec(object.content.contentType), "text/plain")
      assert.strictEqual(dec(object.content.charset), "utf-8")
      assert.strictEqual(dec(object.content.contentEncoding), "identity")
      assert.strictEqual(dec(object.content.usermeta?.[0]?.value), "1")
      assert.strictEqual(dec(object.content.indexes?.[0]?.key), "idx_bin")
      assert.strictEqual(dec(object.content.links?.[0]?.tag), "t")
      assert.strictEqual(object.content.lastMod, 1)
      assert.strictEqual(object.content.lastModUsecs, 500_000)
      assert.isAbove(object.content.vtag.length, 0)
      assert.deepStrictEqual(Buffer.from(object.vclock), Buffer.from(result.object.vclock))
    }))

  it.scoped("a put beyond the memory bound fails and loses nothing already stored", () =>
    Effect.gen(function*() {
      const store = yield* KvStore.make({ maxBytes: 10_000 })
      const value = new Uint8Array(1000)
      let stored = 0
      let failure: KvError.MemoryLimitExceeded | undefined
      while (failure === undefined) {
        const result = yield* Effect.either(store.put(bucket, enc(`k${stored}`), { value }))
        if (Either.isRight(result)) stored++
        else if (result.left._tag === "MemoryLimitExceeded") failure = result.left
        else assert.fail(`unexpected ${result.left._tag}`)
      }
      assert.isAbove(stored, 5)
      assert.strictEqual(failure.limitBytes, 10_000)
      assert.isAbove(failure.requiredBytes, 10_000)
      assert.match(failure.message, /Memory limit exceeded/)
      const usage = yield* store.usage
      assert.strictEqual(usage.objects, stored)
      assert.isAtMost(usage.bytes, 10_000)
      for (let i = 0; i < stored; i++) {
        const o = yield* store.get(at(`k${i}`))
        assert.strictEqual(Option.getOrThrow(o).content.value.length, 1000)
      }
      // An overwrite that would grow past the bound leaves the old object in place ...
      yield* Effect.flip(store.put(bucket, enc("k0"), { value: new Uint8Array(5000) }))
      assert.strictEqual(Option.getOrThrow(yield* store.get(at("k0"))).content.value.length, 1000)
      // ... while shrinking and deleting free room for new writes.
      yield* store.put(bucket, enc("k0"), { value: new Uint8Array(10) })
      yield* store.delete(at("k1"))
      yield* store.put(bucket, enc("new"), { value })
    }))

  it.scoped("a large bucket is listed lazily in small batches", () =>
    Effect.gen(function*() {
      const store = yield* KvStore.make()
      const n = 100_000
      for (let i = 0; i < n; i++) yield* store.put(bucket, enc(`k${i}`), { value: enc("") })
      let batches = 0
      let keys = 0
      let largest = 0
      yield* Stream.runForEach(store.listKeys(bucket), (batch) =>
        Effect.sync(() => {
          batches++
          keys += batch.length
          largest = Math.max(largest, batch.length)
        }))
      assert.strictEqual(keys, n)
      assert.strictEqual(batches, n / 1000)
      assert.strictEqual(largest, 1000)
      // Pulling one batch only touches one batch.
      const first = yield* Stream.runHead(store.listKeys(bucket))
      assert.strictEqual(Option.getOrThrow(first).length, 1000)
    }), 60_000)

  it.scoped("rejects invalid options", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(KvStore.make({ maxBytes: -1 }))
      assert.strictEqual(error._tag, "ParseError")
      const badInterval = yield* Effect.flip(KvStore.make({ snapshotInterval: "soon" as "1 second" }))
      assert.strictEqual(badInterval._tag, "ParseError")
    }))
})

describe("KvStore.config", () => {
  const fromEnv = (env: Record<string, string>) =>
    Effect.withConfigProvider(KvStore.config, ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("reads the environment; no data file means memory only", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* fromEnv({}), {
        dataFile: undefined,
        maxBytes: undefined,
        snapshotInterval: undefined,
        sync: undefined,
        syncInterval: undefined
      })
      const options = yield* fromEnv({ WARREN_DATA_FILE: "/tmp/kv.snap", WARREN_KV_MAX_BYTES: "1000" })
      assert.strictEqual(options.dataFile, "/tmp/kv.snap")
      assert.strictEqual(options.maxBytes, 1000)
      assert.isTrue(Duration.equals(Duration.decode(options.snapshotInterval!), Duration.minutes(5)))
      const custom = yield* fromEnv({ WARREN_DATA_FILE: "/tmp/kv.snap", WARREN_KV_SNAPSHOT_INTERVAL: "30 seconds" })
      assert.isTrue(Duration.equals(Duration.decode(custom.snapshotInterval!), Duration.seconds(30)))
      const bad = yield* Effect.flip(fromEnv({ WARREN_KV_MAX_BYTES: "-5" }))
      assert.strictEqual(bad._op, "InvalidData")
    }))
})

describe("KvStore snapshot", () => {
  it.scoped("is written on stop and loaded on start", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv.snapshot")
      const written = yield* Effect.scoped(Effect.gen(function*() {
        const store = yield* KvStore.make({ dataFile })
        yield* TestClock.adjust("2 seconds")
        yield* store.put(bucket, enc("a"), {
          value: enc("1"),
          contentType: enc("text/plain"),
          usermeta: [{ key: enc("m") }]
        })
        yield* store.put({ type: enc("t"), bucket: enc("tb") }, enc("b"), { value: new Uint8Array([0, 255, 7]) })
        yield* store.put(bucket, enc("gone"), { value: enc("x") })
        yield* store.delete(at("gone"))
        return { a: Option.getOrThrow(yield* store.get(at("a"))), usage: yield* store.usage }
      }))
      assert.isTrue(fs.existsSync(dataFile))

      const store = yield* KvStore.make({ dataFile })
      const a = Option.getOrThrow(yield* store.get(at("a")))
      assert.deepStrictEqual(Buffer.from(a.vclock), Buffer.from(written.a.vclock))
      assert.deepStrictEqual(Buffer.from(a.content.vtag), Buffer.from(written.a.content.vtag))
      assert.strictEqual(a.content.lastMod, 2)
      assert.strictEqual(dec(a.content.contentType), "text/plain")
      assert.strictEqual(dec(a.content.usermeta?.[0]?.key), "m")
      assert.isUndefined(a.content.usermeta?.[0]?.value)
      const b = Option.getOrThrow(yield* store.get({ type: enc("t"), bucket: enc("tb"), key: enc("b") }))
      assert.deepStrictEqual([...b.content.value], [0, 255, 7])
      assert.isTrue(Option.isNone(yield* store.get(at("gone"))))
      assert.deepStrictEqual(yield* store.usage, written.usage)
      // The write sequence continues: a new write never reuses an old vclock.
      const next = yield* store.put(bucket, enc("a"), { value: enc("2") })
      assert.notDeepEqual(Buffer.from(next.object.vclock), Buffer.from(written.a.vclock))
    }))

  it.scoped("an unchanged store does not rewrite the file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv.snapshot")
      yield* Effect.scoped(
        Effect.flatMap(KvStore.make({ dataFile }), (s) => s.put(bucket, enc("k"), { value: enc("v") }))
      )
      const before = fs.statSync(dataFile).ino
      yield* Effect.scoped(Effect.flatMap(KvStore.make({ dataFile }), (s) => s.get(at("k"))))
      assert.strictEqual(fs.statSync(dataFile).ino, before)
      yield* Effect.scoped(Effect.flatMap(KvStore.make({ dataFile }), (s) => s.delete(at("k"))))
      assert.notStrictEqual(fs.statSync(dataFile).ino, before)
    }))

  it.scoped("leftover and truncated temp files of a crashed writer are ignored and removed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv.snapshot")
      yield* Effect.scoped(
        Effect.flatMap(KvStore.make({ dataFile }), (s) => s.put(bucket, enc("k"), { value: enc("v") }))
      )
      const good = fs.readFileSync(dataFile)
      // What a writer killed mid-write leaves: a partial copy under a temp name.
      // (pid 2147483646 cannot be a running process)
      const leftover = path.join(dir, `${snapshotFile.tempPrefix(dataFile)}2147483646-abc`)
      fs.writeFileSync(leftover, good.subarray(0, good.length - 10))
      // A temp file of a live writer (here: our parent process) is not touched.
      const live = path.join(dir, `${snapshotFile.tempPrefix(dataFile)}${process.ppid}-def`)
      fs.writeFileSync(live, "partial")
      const store = yield* KvStore.make({ dataFile })
      assert.deepStrictEqual(yield* getValue(store, "k"), Option.some("v"))
      assert.isFalse(fs.existsSync(leftover))
      assert.isTrue(fs.existsSync(live))
    }))

  it.scoped("a damaged or truncated snapshot fails start-up instead of starting empty", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv.snapshot")
      yield* Effect.scoped(
        Effect.flatMap(KvStore.make({ dataFile }), (s) => s.put(bucket, enc("k"), { value: enc("v") }))
      )
      const good = fs.readFileSync(dataFile)

      fs.writeFileSync(dataFile, good.subarray(0, good.length - 1))
      const truncated = yield* Effect.flip(KvStore.make({ dataFile }))
      assert.strictEqual(truncated._tag, "SnapshotError")
      if (truncated._tag === "SnapshotError") assert.strictEqual(truncated.reason, "Corrupt")

      const flipped = Buffer.from(good)
      flipped[20] = flipped[20]! ^ 0xff
      fs.writeFileSync(dataFile, flipped)
      const damaged = yield* Effect.flip(KvStore.make({ dataFile }))
      assert.strictEqual(damaged._tag, "SnapshotError")
      assert.match(damaged.message, /checksum/)

      fs.writeFileSync(dataFile, "not a snapshot at all, but long enough to have a digest.")
      const foreign = yield* Effect.flip(KvStore.make({ dataFile }))
      assert.match(foreign.message, /not a warren KV snapshot/)
    }))

  it.scoped("a write that fails midway leaves the previous snapshot intact and no temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv.snapshot")
      yield* Effect.scoped(
        Effect.flatMap(KvStore.make({ dataFile }), (s) => s.put(bucket, enc("k"), { value: enc("v") }))
      )
      const good = fs.readFileSync(dataFile)
      const entry: snapshotFile.SnapshotEntry = {
        type: enc("default"),
        bucket: enc("b"),
        key: enc("x"),
        vclock: enc("vc"),
        content: { value: new Uint8Array(64 * 1024) }
      }
      // Many good entries (so bytes reach the temp file), then one the encoder rejects.
      const entries = [
        ...Array.from({ length: 40 }, () => entry),
        { ...entry, content: {} } as snapshotFile.SnapshotEntry
      ]
      const failed = yield* Effect.exit(
        Effect.tryPromise(() => snapshotFile.write(dataFile, { serverId: new Uint8Array(8), sequence: 1 }, entries))
      )
      assert.isTrue(Exit.isFailure(failed))
      assert.deepStrictEqual(fs.readFileSync(dataFile), good)
      assert.deepStrictEqual(fs.readdirSync(dir).filter((n) => n.includes(".tmp-")), [])
      const store = yield* KvStore.make({ dataFile })
      assert.deepStrictEqual(yield* getValue(store, "k"), Option.some("v"))
    }))

  it.scoped("a snapshot larger than the memory bound fails start-up", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv.snapshot")
      yield* Effect.scoped(
        Effect.flatMap(KvStore.make({ dataFile }), (s) => s.put(bucket, enc("k"), { value: new Uint8Array(5000) }))
      )
      const error = yield* Effect.flip(KvStore.make({ dataFile, maxBytes: 1000 }))
      assert.strictEqual(error._tag, "MemoryLimitExceeded")
    }))

  it.scoped("is also written every snapshotInterval while something changed", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const dataFile = path.join(dir, "kv.snapshot")
      const store = yield* KvStore.make({ dataFile, snapshotInterval: "1 minute" })
      yield* store.put(bucket, enc("k"), { value: enc("v") })
      const appeared = yield* Effect.fork(awaitFile(dir, "kv.snapshot"))
      yield* TestClock.adjust("59 seconds")
      assert.isFalse(fs.existsSync(dataFile))
      yield* TestClock.adjust("1 second")
      yield* appeared.await
      const loaded = yield* Effect.promise(() => snapshotFile.read(dataFile))
      assert.strictEqual(loaded?.header.objects, 1)
    }))
})

describe("KvStore snapshot crash", () => {
  it.scopedLive(
    "a writer killed with SIGKILL mid-write leaves the previous snapshot loadable",
    () =>
      Effect.gen(function*() {
        const dir = yield* tempDir
        const dataFile = path.join(dir, "kv.snapshot")
        const objects = 1000
        const fixture = fileURLToPath(new URL("./fixtures/snapshotWriter.ts", import.meta.url))
        const child = yield* Effect.acquireRelease(
          Effect.sync(() =>
            spawn(process.execPath, [viteNode(), fixture, dataFile, String(objects)], {
              cwd: fileURLToPath(new URL("..", import.meta.url)),
              stdio: ["ignore", "pipe", "inherit"]
            })
          ),
          (c) => Effect.sync(() => c.kill("SIGKILL"))
        )
        // After the first complete snapshot, kill the writer as soon as the next temp file has bytes in it.
        yield* Effect.async<void>((resume) => {
          child.stdout!.once("data", () => {
            const prefix = snapshotFile.tempPrefix(dataFile)
            const watcher = fs.watch(dir, (_event, name) => {
              if (name === null || !name.startsWith(prefix)) return
              const size = fs.statSync(path.join(dir, name), { throwIfNoEntry: false })?.size ?? 0
              if (size > 0) {
                watcher.close()
                child.kill("SIGKILL")
                resume(Effect.void)
              }
            })
          })
        })
        yield* Effect.async<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) resume(Effect.void)
          else child.once("exit", () => resume(Effect.void))
        })
        assert.strictEqual(child.signalCode, "SIGKILL")
        const leftovers = fs.readdirSync(dir).filter((n) => n.startsWith(snapshotFile.tempPrefix(dataFile)))
        // Almost always the killed writer's partial temp file (it is only missing if the kill landed in the
        // microseconds between the size check and the rename).
        assert.isAtMost(leftovers.length, 1)

        const snapshot = yield* Effect.promise(() => snapshotFile.read(dataFile))
        assert.strictEqual(snapshot?.entries.length, objects)
        const rounds = new Set(snapshot?.entries.map((e) => dec(e.vclock)))
        assert.strictEqual(rounds.size, 1, "every object comes from one complete round")

        const store = yield* KvStore.make({ dataFile, maxBytes: 1024 * 1024 * 1024 })
        assert.strictEqual((yield* store.usage).objects, objects)
        assert.deepStrictEqual(fs.readdirSync(dir).filter((n) => n.includes(".tmp-")), [])
      }),
    60_000
  )
})

/** Waits (on a file-system event, not a timer) until `name` exists in `dir`. */
const awaitFile = (dir: string, name: string) =>
  Effect.async<void>((resume) => {
    const watcher = fs.watch(dir, () => {
      if (fs.existsSync(path.join(dir, name))) {
        watcher.close()
        resume(Effect.void)
      }
    })
    if (fs.existsSync(path.join(dir, name))) {
      watcher.close()
      resume(Effect.void)
    }
    return Effect.sync(() => watcher.close())
  })
