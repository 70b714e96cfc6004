import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber } from "effect"
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as Net from "node:net"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as NodeUrl from "node:url"
import { parsePbServeArgs, pbServeProgram } from "../src/commands/pbServe.js"

/** Connects, sends ping (code 1, length 1) and server info (7), resolves with the reply codes. */
const pingAndInfo = (port: number) => exchange(port, Buffer.from([0, 0, 0, 1, 1, 0, 0, 0, 1, 7]), 2)

/** RpbPutReq { bucket: "b", key: "k", content: { value: "v" } } as a frame (code 11), encoded by hand. */
const putFrame = Buffer.from([0, 0, 0, 12, 11, 0x0a, 1, 0x62, 0x12, 1, 0x6b, 0x22, 3, 0x0a, 1, 0x76])

/** Connects, writes `frames`, resolves with the codes of the first `replies` reply frames. */
const exchange = (port: number, frames: Uint8Array, replies: number) =>
  Effect.async<ReadonlyArray<number>, Error>((resume) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    let buffer = Buffer.alloc(0)
    const codes: Array<number> = []
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk])
      while (buffer.length >= 4 && buffer.length >= 4 + buffer.readUInt32BE(0)) {
        codes.push(buffer[4]!)
        buffer = buffer.subarray(4 + buffer.readUInt32BE(0))
      }
      if (codes.length === replies) {
        socket.destroy()
        resume(Effect.succeed(codes))
      }
    })
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.write(frames)
  })

describe("warren pb serve", () => {
  it("parses its options", () => {
    assert.deepStrictEqual(parsePbServeArgs([]), Either.right({ host: "127.0.0.1", port: 8087 }))
    assert.deepStrictEqual(
      parsePbServeArgs(["--host", "0.0.0.0", "--port", "0"]),
      Either.right({ host: "0.0.0.0", port: 0 })
    )
    assert.deepStrictEqual(parsePbServeArgs(["--port=9000"]), Either.right({ host: "127.0.0.1", port: 9000 }))
    assert.isTrue(Either.isLeft(parsePbServeArgs(["--port", "x"])))
    assert.isTrue(Either.isLeft(parsePbServeArgs(["--port", "70000"])))
    assert.isTrue(Either.isLeft(parsePbServeArgs(["--nope"])))
    assert.isTrue(Either.isLeft(parsePbServeArgs(["extra"])))
    assert.deepStrictEqual(parsePbServeArgs(["--help"]), Either.left("help"))
    assert.deepStrictEqual(
      parsePbServeArgs(["--data-file", "kv.snapshot"]),
      Either.right({ host: "127.0.0.1", port: 8087, dataFile: "kv.snapshot" })
    )
    assert.isTrue(Either.isLeft(parsePbServeArgs(["--data-file", ""])))
  })

  it("takes host and port from WARREN_HOST / WARREN_PORT, flags first", () => {
    const env = { WARREN_HOST: "0.0.0.0", WARREN_PORT: "9001" }
    assert.deepStrictEqual(parsePbServeArgs([], env), Either.right({ host: "0.0.0.0", port: 9001 }))
    assert.deepStrictEqual(parsePbServeArgs(["--port", "9002"], env), Either.right({ host: "0.0.0.0", port: 9002 }))
    assert.isTrue(Either.isLeft(parsePbServeArgs([], { WARREN_PORT: "eighty" })))
  })

  it.live("the program serves the registered services on the real port, and stops when interrupted", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<{ host: string; port: number }>()
      const fiber = yield* Effect.fork(
        pbServeProgram({ host: "127.0.0.1", port: 0 }, (address) => Deferred.succeed(listening, address))
      )
      const address = yield* Deferred.await(listening)
      assert.strictEqual(address.host, "127.0.0.1")
      assert.isAbove(address.port, 0)
      assert.deepStrictEqual(yield* pingAndInfo(address.port), [2, 8])
      yield* Fiber.interrupt(fiber)
      const refused = yield* Effect.exit(pingAndInfo(address.port))
      assert.isTrue(Exit.isFailure(refused))
    }))

  it.live("a port in use is an error", () =>
    Effect.gen(function*() {
      const listening = yield* Deferred.make<{ host: string; port: number }>()
      const first = yield* Effect.fork(
        pbServeProgram({ host: "127.0.0.1", port: 0 }, (address) => Deferred.succeed(listening, address))
      )
      const { port } = yield* Deferred.await(listening)
      const second = yield* Effect.exit(pbServeProgram({ host: "127.0.0.1", port }))
      assert.isTrue(Exit.isFailure(second))
      yield* Fiber.interrupt(first)
    }))

  // The command as a process: main.ts run from the sources by vite-node (with this project's vitest config, so
  // @warren/* resolve to their sources: no build needed), a signal, exit code 0.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    it.scopedLive(`the command prints its address, serves, writes the snapshot and exits 0 on ${signal}`, () =>
      Effect.gen(function*() {
        const root = NodeUrl.fileURLToPath(new URL("../../../", import.meta.url))
        const dir = yield* Effect.acquireRelease(
          Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "warren-pb-serve-"))),
          (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
        )
        const dataFile = NodePath.join(dir, "nested", "kv.snapshot")
        const child = yield* Effect.acquireRelease(
          Effect.sync(() =>
            ChildProcess.spawn(
              process.execPath,
              [
                "node_modules/vite-node/vite-node.mjs",
                "--config",
                "packages/cli/vitest.config.ts",
                "packages/cli/src/main.ts",
                "pb",
                "serve",
                "--port",
                "0",
                "--data-file",
                dataFile
              ],
              { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
            )
          ),
          (child) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
        )
        let stderr = ""
        child.stderr.on("data", (chunk) => (stderr += chunk))
        let stdout = ""
        const port = yield* Effect.async<number, Error>((resume) => {
          child.stdout.on("data", (chunk) => {
            stdout += chunk
            const match = /^listening on 127\.0\.0\.1:(\d+)$/m.exec(stdout)
            if (match) resume(Effect.succeed(Number(match[1])))
          })
          child.once("exit", (code) => resume(Effect.fail(new Error(`exited ${code} before listening: ${stderr}`))))
        })
        assert.deepStrictEqual(yield* pingAndInfo(port), [2, 8])
        assert.deepStrictEqual(yield* exchange(port, putFrame, 1), [12])
        const code = yield* Effect.async<number | null>((resume) => {
          child.once("exit", (code) => resume(Effect.succeed(code)))
          child.kill(signal)
        })
        assert.strictEqual(code, 0, stderr)
        assert.match(stdout, new RegExp(`^stopped 127\\.0\\.0\\.1:${port}$`, "m"))
        assert.isTrue(NodeFs.existsSync(dataFile), `the KV snapshot is written on stop: ${stdout} ${stderr}`)
      }), 60_000)
  }
})
