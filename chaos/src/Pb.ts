/**
 * The PB side of the fault suite: a `warren pb serve` child process (the CLI users run), its memory and file
 * descriptors read from /proc, Riak PB framing written independently of the server's code, and a canary
 * connection that pings and does KV round trips while faults run.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"

/** The repository root (this file is chaos/src/Pb.ts or chaos/dist/Pb.js). */
export const repoRoot = fileURLToPath(new URL("../../", import.meta.url))
const cliMain = `${repoRoot}packages/cli/dist/main.js`

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------------------------
// The server process

/** A running `warren pb serve`. */
export interface PbProcess {
  readonly port: number
  readonly pid: number
  readonly child: ChildProcess
  /** Resident set size in bytes (VmRSS), or NaN once the process is gone. */
  readonly rss: () => number
  /** Open file descriptors, or NaN once the process is gone. */
  readonly fds: () => number
  /** Whether the process has exited (and how). */
  readonly exit: () => { readonly code: number | null; readonly signal: NodeJS.Signals | null } | undefined
  /** Everything the process printed. */
  readonly output: () => string
  /** Sends `signal` and resolves once the process has exited. */
  readonly stop: (
    signal?: NodeJS.Signals
  ) => Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

/** Starts `node packages/cli/dist/main.js pb serve --port 0 [args]` and resolves once it listens. */
export const startPbServer = (
  args: ReadonlyArray<string> = [],
  env: Readonly<Record<string, string>> = {}
): Promise<PbProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliMain, "pb", "serve", "--host", "127.0.0.1", "--port", "0", ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.once("exit", (code, signal) => {
        exit = { code, signal }
        done(exit)
      })
    )
    const onExit = () => child.kill("SIGKILL")
    process.once("exit", onExit)
    void exited.then(() => {
      process.removeListener("exit", onExit)
      reject(new Error(`warren pb serve exited before listening: ${out}`))
    })
    child.stderr?.on("data", (chunk: Buffer) => out += chunk.toString("utf8"))
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8")
      const match = /listening on [^\s:]+:(\d+)/.exec(out)
      if (match !== null && child.pid !== undefined) {
        const pid = child.pid
        resolve({
          port: Number(match[1]),
          pid,
          child,
          rss: () => {
            try {
              const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
              return m === null ? Number.NaN : Number(m[1]) * 1024
            } catch {
              return Number.NaN
            }
          },
          fds: () => {
            try {
              return readdirSync(`/proc/${pid}/fd`).length
            } catch {
              return Number.NaN
            }
          },
          exit: () => exit,
          output: () => out,
          stop: (signal = "SIGTERM") => {
            if (exit === undefined) child.kill(signal)
            return exited
          }
        })
      }
    })
  })

// ---------------------------------------------------------------------------------------------------------------
// Framing and protobuf (hand-written: the suite must not share the server's code)

/** A frame: 4-byte big-endian length of code + body, the code, the body. */
export const frame = (code: number, body: Uint8Array = new Uint8Array()): Buffer => {
  const out = Buffer.alloc(5 + body.length)
  out.writeUInt32BE(body.length + 1, 0)
  out[4] = code
  out.set(body, 5)
  return out
}

const varint = (value: number): Array<number> => {
  const out: Array<number> = []
  let n = value
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

/** A length-delimited protobuf field. */
export const bytesField = (tag: number, value: string | Uint8Array): Buffer => {
  const bytes = typeof value === "string" ? Buffer.from(value) : Buffer.from(value)
  return Buffer.concat([Buffer.from([...varint((tag << 3) | 2), ...varint(bytes.length)]), bytes])
}

/** A varint protobuf field. */
export const varintField = (tag: number, value: number): Buffer => Buffer.from([...varint(tag << 3), ...varint(value)])

/** RpbPutReq { bucket, key, content { value } } (code 11). */
export const putBody = (bucket: string, key: string, value: Uint8Array | string): Buffer =>
  Buffer.concat([bytesField(1, bucket), bytesField(2, key), bytesField(4, bytesField(1, value))])

/** RpbGetReq { bucket, key } (code 9), also RpbDelReq (13). */
export const getBody = (bucket: string, key: string): Buffer =>
  Buffer.concat([bytesField(1, bucket), bytesField(2, key)])

/** RpbListKeysReq { bucket } (code 17, streamed). */
export const listKeysBody = (bucket: string): Buffer => bytesField(1, bucket)

/** The length-delimited fields of a message body (unknown wire types end the scan). */
export const fields = (body: Uint8Array): Array<{ tag: number; value: Uint8Array | number }> => {
  const out: Array<{ tag: number; value: Uint8Array | number }> = []
  let at = 0
  const read = (): number => {
    let n = 0
    let shift = 1
    for (;;) {
      const byte = body[at++]
      if (byte === undefined) return Number.NaN
      n += (byte & 0x7f) * shift
      if ((byte & 0x80) === 0) return n
      shift *= 128
    }
  }
  while (at < body.length) {
    const key = read()
    const tag = Math.floor(key / 8)
    const wire = key % 8
    if (wire === 0) out.push({ tag, value: read() })
    else if (wire === 2) {
      const length = read()
      out.push({ tag, value: body.subarray(at, at + length) })
      at += length
    } else break
  }
  return out
}

/** The `errmsg` of an RpbErrorResp body. */
export const errorText = (body: Uint8Array): string => {
  const message = fields(body).find((f) => f.tag === 1)
  return message !== undefined && typeof message.value !== "number" ? Buffer.from(message.value).toString("utf8") : ""
}

/** The value of the first content of an RpbGetResp body (undefined when not found). */
export const getRespValue = (body: Uint8Array): Buffer | undefined => {
  const content = fields(body).find((f) => f.tag === 1)
  if (content === undefined || typeof content.value === "number") return undefined
  const value = fields(content.value).find((f) => f.tag === 1)
  return value === undefined || typeof value.value === "number" ? undefined : Buffer.from(value.value)
}

/** The texts of the server's defect replies (a request crashed the server's code). */
export const isDefect = (text: string): boolean => text.startsWith("Error processing")

// ---------------------------------------------------------------------------------------------------------------
// A raw connection

/** A client connection that cuts reply frames and notes every error reply. */
export interface RawConnection {
  readonly socket: Net.Socket
  /** Error reply texts received so far. */
  readonly errors: Array<string>
  /** Reply frames received so far (code, body); with `keep: false`, those not yet returned by `next`. */
  readonly frames: Array<{ readonly code: number; readonly body: Buffer }>
  /** Resolves once the server closed (or the socket failed). */
  readonly closed: Promise<void>
  readonly isClosed: () => boolean
  /** The next reply frame, or undefined when the connection closed or `timeoutMs` passed. */
  readonly next: (timeoutMs: number) => Promise<{ readonly code: number; readonly body: Buffer } | undefined>
  /** Marks every frame received so far as read (`next` returns only later ones). */
  readonly skip: () => void
}

/**
 * Connects to 127.0.0.1:`port`; `read: false` never reads (a client that pipelines and does not read);
 * `keep: false` forgets the frames `next` returned (long-lived connections: the canary, the soak).
 */
export const connect = (
  port: number,
  options: { readonly read?: boolean; readonly keep?: boolean } = {}
): Promise<RawConnection> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    const errors: Array<string> = []
    const frames: Array<{ code: number; body: Buffer }> = []
    let taken = 0
    let buffer: Buffer = Buffer.alloc(0)
    let isClosed = false
    let waiter: (() => void) | undefined
    const wake = () => {
      const w = waiter
      waiter = undefined
      w?.()
    }
    const closed = new Promise<void>((done) =>
      socket.once("close", () => {
        isClosed = true
        wake()
        done()
      })
    )
    socket.on("error", () => {})
    // A client that never reads: no data listener (one would resume the socket), so the kernel buffers fill up.
    if (options.read !== false) {
      socket.on("data", (chunk: Buffer) => {
        buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
        while (buffer.length >= 4 && buffer.length >= 4 + buffer.readUInt32BE(0)) {
          const length = buffer.readUInt32BE(0)
          const code = length === 0 ? -1 : buffer[4]!
          const body = Buffer.from(buffer.subarray(5, 4 + length))
          if (code === 0) errors.push(errorText(body))
          frames.push({ code, body })
          buffer = buffer.subarray(4 + length)
        }
        wake()
      })
    }
    socket.once("connect", () =>
      resolve({
        socket,
        errors,
        frames,
        closed,
        isClosed: () => isClosed,
        next: async (timeoutMs) => {
          const deadline = Date.now() + timeoutMs
          while (taken >= frames.length && !isClosed && Date.now() < deadline) {
            await new Promise<void>((done) => {
              waiter = done
              setTimeout(done, Math.max(1, deadline - Date.now()))
            })
          }
          if (taken >= frames.length) return undefined
          if (options.keep !== false) return frames[taken++]
          return frames.shift()
        },
        skip: () => {
          if (options.keep !== false) taken = frames.length
          else frames.length = 0
        }
      }))
    socket.once("error", reject)
  })

/** Writes `bytes` and resolves once they are handed to the kernel (or the socket failed). */
export const write = (connection: RawConnection, bytes: Uint8Array): Promise<void> =>
  new Promise((resolve) => {
    if (connection.isClosed() || connection.socket.destroyed) return resolve()
    connection.socket.write(bytes, () => resolve())
  })

/** One request and its first reply frame (undefined: no reply within `timeoutMs`, or closed). */
export const request = async (connection: RawConnection, code: number, body?: Uint8Array, timeoutMs = 5_000) => {
  await write(connection, frame(code, body))
  return connection.next(timeoutMs)
}

// ---------------------------------------------------------------------------------------------------------------
// The canary

/** What the canary saw. */
export interface CanaryReport {
  readonly rounds: number
  readonly failures: ReadonlyArray<string>
  readonly maxRoundMs: number
}

/** A connection that pings and writes then reads a KV object every `intervalMs` until stopped. */
export interface Canary {
  readonly stop: () => Promise<CanaryReport>
}

/** Starts the canary; every round must answer within `roundTimeoutMs` (a slow machine is not a failure). */
export const startCanary = async (port: number, intervalMs = 50, roundTimeoutMs = 10_000): Promise<Canary> => {
  const connection = await connect(port, { keep: false })
  const failures: Array<string> = []
  let rounds = 0
  let maxRoundMs = 0
  let running = true
  const loop = (async () => {
    while (running) {
      const started = Date.now()
      const value = `canary-${rounds}-${started}`
      const ping = await request(connection, 1, undefined, roundTimeoutMs)
      if (ping?.code !== 2) failures.push(`ping: ${ping === undefined ? "no reply" : `code ${ping.code}`}`)
      const put = await request(connection, 11, putBody("canary", "k", value), roundTimeoutMs)
      if (put?.code !== 12) failures.push(`put: ${put === undefined ? "no reply" : `code ${put.code}`}`)
      const get = await request(connection, 9, getBody("canary", "k"), roundTimeoutMs)
      if (get?.code !== 10 || getRespValue(get.body)?.toString("utf8") !== value) {
        failures.push(`get: ${get === undefined ? "no reply" : `code ${get.code}`}`)
      }
      if (connection.isClosed()) {
        failures.push("the server closed the canary connection")
        return
      }
      rounds++
      maxRoundMs = Math.max(maxRoundMs, Date.now() - started)
      if (failures.length > 0) return
      await delay(intervalMs)
    }
  })()
  return {
    stop: async () => {
      running = false
      await loop
      connection.socket.destroy()
      return { rounds, failures: [...failures, ...connection.errors.map((e) => `error reply: ${e}`)], maxRoundMs }
    }
  }
}
