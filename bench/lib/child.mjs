// Child processes for servers and load generators: fork with an IPC channel, ask and answer over it.
import { fork } from "node:child_process"
import { once } from "node:events"

const children = new Set()
const killAll = () => {
  for (const child of children) {
    try {
      child.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
}
process.once("exit", killAll)
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    killAll()
    process.exit(130)
  })
}

/**
 * Forks `script` with `args` (JSON in argv[2]) and returns a handle to it.
 * `execArgv` adds node flags (`--expose-gc`, `--cpu-prof`, ...). `ulimit` raises the soft open-file limit for the
 * child and `cpu` pins it to one CPU (`taskset -c`): both run the child through `sh`, which then execs node.
 */
export const start = (script, args, { execArgv = [], ulimit, cpu } = {}) => {
  const options = { stdio: ["ignore", "inherit", "inherit", "ipc"], execArgv }
  let child
  if (ulimit !== undefined || cpu !== undefined) {
    // Node cannot raise its own RLIMIT_NOFILE: let a shell raise the soft limit and exec node in its place.
    const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`
    const node = [process.execPath, ...execArgv, script, JSON.stringify(args)].map(quote).join(" ")
    const cmd = [
      ulimit === undefined ? "" : `ulimit -n ${ulimit} &&`,
      "exec",
      cpu === undefined ? "" : `taskset -c ${cpu}`,
      node
    ].filter((p) => p !== "").join(" ")
    child = fork(script, [JSON.stringify(args)], { ...options, execPath: "/bin/sh", execArgv: ["-c", cmd, "sh"] })
  } else {
    child = fork(script, [JSON.stringify(args)], options)
  }
  children.add(child)
  const inbox = []
  const waiters = []
  let exitInfo
  child.on("message", (msg) => {
    const i = waiters.findIndex((w) => w.type === msg.type)
    if (i >= 0) waiters.splice(i, 1)[0].resolve(msg)
    else inbox.push(msg)
  })
  child.once("exit", (code, signal) => {
    children.delete(child)
    exitInfo = { code, signal }
    for (const w of waiters.splice(0)) {
      w.reject(new Error(`${script} exited (${signal ?? code}) while we waited for "${w.type}"`))
    }
  })
  /** Resolves with the next message of `type` (an `error` message from the child rejects). */
  const next = (type, timeoutMs = 120_000) => {
    const j = inbox.findIndex((m) => m.type === type || m.type === "error")
    if (j >= 0) {
      const msg = inbox.splice(j, 1)[0]
      return msg.type === "error" ? Promise.reject(childError(script, msg)) : Promise.resolve(msg)
    }
    if (exitInfo !== undefined) {
      return Promise.reject(new Error(`${script} exited (${exitInfo.signal ?? exitInfo.code}) before "${type}"`))
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const k = waiters.indexOf(w1)
        if (k >= 0) waiters.splice(k, 1)
        const k2 = waiters.indexOf(w2)
        if (k2 >= 0) waiters.splice(k2, 1)
        reject(new Error(`${script}: no "${type}" within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = (f) => (v) => {
        clearTimeout(timer)
        const k = waiters.indexOf(w1)
        if (k >= 0) waiters.splice(k, 1)
        const k2 = waiters.indexOf(w2)
        if (k2 >= 0) waiters.splice(k2, 1)
        f(v)
      }
      const w1 = { type, resolve: done(resolve), reject: done(reject) }
      const w2 = { type: "error", resolve: done((msg) => reject(childError(script, msg))), reject: done(reject) }
      waiters.push(w1, w2)
    })
  }
  /** Sends `msg` and waits for the reply of type `reply`. */
  const ask = (msg, reply, timeoutMs) => {
    const answer = next(reply, timeoutMs)
    child.send(msg)
    return answer
  }
  /** Asks the child to stop, kills it if it does not exit in time. */
  const stop = async (timeoutMs = 10_000) => {
    if (exitInfo !== undefined) return
    const exited = once(child, "exit")
    try {
      child.send({ type: "stop" })
    } catch {
      // channel already closed
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    await exited
    clearTimeout(timer)
  }
  return { child, pid: child.pid, next, ask, send: (msg) => child.send(msg), stop }
}

const childError = (script, msg) => {
  const error = new Error(`${script}: ${msg.message}`)
  if (msg.notAvailable) error.notAvailable = true
  return error
}

/** In a child: the JSON arguments the parent passed. */
export const childArgs = () => JSON.parse(process.argv[2] ?? "{}")

/** In a child: reports an error to the parent and exits. */
export const failChild = (error) => {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
  process.send?.({ type: "error", message, notAvailable: error?.notAvailable === true })
  setTimeout(() => process.exit(1), 50)
}

/** An error that marks a contender whose library API has not landed yet. */
export class NotAvailable extends Error {
  constructor(message) {
    super(message)
    this.notAvailable = true
  }
}
