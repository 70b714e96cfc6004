import { KvStore } from "@warren/kv"
import { Effect } from "effect"
import * as fs from "node:fs"
const enc = (s) => new TextEncoder().encode(s)
const n = 30000
const value = new Uint8Array(256)
const run = (label, options, conc) => Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  const store = yield* KvStore.make(options)
  const keys = Array.from({length: 1000}, (_, i) => enc(`k${i}`))
  const t0 = performance.now(); const c0 = process.cpuUsage()
  yield* Effect.forEach(Array.from({length: n}, (_, i) => i), (i) => store.put({ bucket: enc("b") }, keys[i % 1000], { value }), { concurrency: conc, discard: true })
  const c = process.cpuUsage(c0)
  console.log(label, conc, "µs/put wall", ((performance.now() - t0) * 1000 / n).toFixed(2), "cpu", ((c.user + c.system) / n).toFixed(2))
})))
for (let r = 0; r < 2; r++) {
  for (const conc of [1, 64]) {
    await run("memory", {}, conc)
    for (const sync of ["none", "always"]) {
      fs.rmSync("/tmp/kvp", { recursive: true, force: true }); fs.mkdirSync("/tmp/kvp")
      await run(sync, { dataFile: "/tmp/kvp/kv", sync }, conc)
    }
  }
}
