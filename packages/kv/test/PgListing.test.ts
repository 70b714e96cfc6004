/**
 * Listing a huge bucket from PostgreSQL through a real PB server, in bounded memory: the keys stream page by
 * page from the database to the client, never all at once. `WARREN_LONG_TESTS=1` lists 1,000,000 keys (the
 * figures in docs/kv.md); the default run lists 50,000, checking the same things at a size that fits `npm test`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { Effect, Either, Fiber, Schedule } from "effect"
import { KvMessages } from "@warren/kv"
import { connect, decodeReply } from "./support/pbClient.js"
import { freshDatabase, seedKeys, startPgServer } from "./support/postgres.js"

const long = process.env["WARREN_LONG_TESTS"] === "1"
const keyCount = long ? 1_000_000 : 50_000
const enc = (s: string) => new TextEncoder().encode(s)
const MiB = 1024 * 1024

/** A full garbage collection, made available to this test process without a command-line flag. */
v8.setFlagsFromString("--expose_gc")
const gc = vm.runInNewContext("gc") as () => void

describe("PgBackend listing", () => {
  it.scopedLive(`lists ${keyCount} keys of one bucket and the buckets beside it, in bounded memory`, () =>
    Effect.gen(function*() {
      const url = yield* freshDatabase
      const server = yield* startPgServer(url)
      yield* server.store.put({ bucket: enc("big") }, enc("template"), { value: enc("v") })
      yield* seedKeys(url, enc("big"), enc("template"), keyCount)
      yield* server.store.delete({ bucket: enc("big"), key: enc("template") })
      for (const b of ["a", "zz", "m"]) yield* server.store.put({ bucket: enc(b) }, enc("k"), { value: enc("v") })

      // Sample this process's memory (server and client both run here) while the listing runs: the peak RSS
      // as it comes, and the heap still in use after a full collection every 20 frames, which is what a listing
      // holds on to (left alone, V8 lets garbage pile up before collecting).
      gc()
      const base = process.memoryUsage()
      let peakHeap = base.heapUsed
      let peakRss = base.rss
      const sample = Effect.sync(() => {
        peakRss = Math.max(peakRss, process.memoryUsage().rss)
      })
      const retained = () => {
        gc()
        peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)
      }
      const sampler = yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced("20 millis")))

      const conn = yield* connect(server.port)
      const started = Date.now()
      yield* conn.send(Either.getOrThrow(KvMessages.codec.encode({ _tag: "RpbListKeysReq", bucket: enc("big") })))
      let listed = 0
      let frames = 0
      let last = ""
      let ordered = true
      for (;;) {
        const reply = decodeReply(yield* conn.next)
        if (reply._tag !== "RpbListKeysResp") assert.fail(`unexpected reply ${JSON.stringify(reply)}`)
        if (++frames % 20 === 0) retained()
        for (const key of reply.keys ?? []) {
          const text = new TextDecoder().decode(key)
          ordered &&= text > last
          last = text
          listed++
        }
        if (reply.done === true) break
      }
      const seconds = (Date.now() - started) / 1000
      yield* sample
      yield* Fiber.interrupt(sampler)

      assert.strictEqual(listed, keyCount)
      assert.isTrue(ordered, "keys arrive in key order, each once")
      assert.isAtLeast(frames, Math.ceil(keyCount / 1000))
      const heapGrowth = (peakHeap - base.heapUsed) / MiB
      const rssGrowth = (peakRss - base.rss) / MiB
      console.log(
        `listed ${listed} keys in ${frames} frames, ${seconds.toFixed(1)} s (${Math.round(listed / seconds)} keys/s); ` +
          `heap after GC ${(base.heapUsed / MiB).toFixed(0)} MiB -> peak +${heapGrowth.toFixed(1)} MiB, ` +
          `rss ${(base.rss / MiB).toFixed(0)} MiB -> peak +${rssGrowth.toFixed(1)} MiB`
      )
      // Holding the keys would take over 100 MiB at 1,000,000 (a Buffer per key); a page is 1,000 keys.
      assert.isBelow(heapGrowth, 16)

      const buckets: Array<string> = []
      yield* conn.send(Either.getOrThrow(KvMessages.codec.encode({ _tag: "RpbListBucketsReq", stream: true })))
      for (;;) {
        const reply = decodeReply(yield* conn.next)
        if (reply._tag !== "RpbListBucketsResp") assert.fail(`unexpected reply ${JSON.stringify(reply)}`)
        for (const b of reply.buckets ?? []) buckets.push(new TextDecoder().decode(b))
        if (reply.done === true) break
      }
      assert.deepStrictEqual(buckets, ["a", "big", "m", "zz"])
    }), long ? 600_000 : 120_000)
})
