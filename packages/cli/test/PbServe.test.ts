import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import * as NodeUrl from "node:url"
import { parsePbServeArgs, pbServeProgram } from "../src/commands/pbServe.js"

/** Connects, sends ping (code 1, length 1) and server info (7), resolves with the reply codes. */
const pingAndInfo = (port: number) =>
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
      if (codes.length === 2) {
        socket.destroy()
        resume(Effect.succeed(codes))
      }
    })
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.write(Buffer.from([0, 0, 0, 1, 1, 0, 0, 0, 1, 7]))
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
    it.scopedLive(`the command prints its address, serves, and exits 0 on ${signal}`, () =>
      Effect.gen(function*() {
        const root = NodeUrl.fileURLToPath(new URL("../../../", import.meta.url))
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
                "0"
              ],
              { cwd: root, stdio: ["ignore", "pipe", "pipe"] }
            )
          ),
          (child) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
        )
        let stderr = ""
        child.stderr.on("data", (chunk) => (stderr += chunk))
        const port = yield* Effect.async<number, Error>((resume) => {
          let stdout = ""
          child.stdout.on("data", (chunk) => {
            stdout += chunk
            const match = /^listening on 127\.0\.0\.1:(\d+)$/m.exec(stdout)
            if (match) resume(Effect.succeed(Number(match[1])))
          })
          child.once("exit", (code) => resume(Effect.fail(new Error(`exited ${code} before listening: ${stderr}`))))
        })
        assert.deepStrictEqual(yield* pingAndInfo(port), [2, 8])
        const code = yield* Effect.async<number | null>((resume) => {
          child.once("exit", (code) => resume(Effect.succeed(code)))
          child.kill(signal)
        })
        assert.strictEqual(code, 0, stderr)
      }), 60_000)
  }
})
