/**
 * The data files' lock: a lock file created atomically (`link` of a complete temp file, which fails when
 * the lock exists) that names its holder (host, pid and the process's start time). A holder that no
 * longer runs (killed with SIGKILL, machine rebooted) leaves a stale lock, which the next start takes
 * over; a live holder makes the start fail. Node has no `flock`, hence a file plus a liveness check.
 */
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"

/** Who holds a lock, as its file records it. */
export interface Owner {
  readonly pid: number
  readonly host: string
  /** The process's start time in clock ticks since boot (Linux), "" where unknown: tells a reused pid apart. */
  readonly start: string
}

/** A live process holds the lock. */
export class LockHeld extends Error {
  constructor(readonly owner: Owner) {
    super(`held by process ${owner.pid} on ${owner.host}`)
  }
}

const startTime = async (pid: number): Promise<string | undefined> => {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, "latin1")
    // The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
  } catch {
    return undefined
  }
}

const me = async (): Promise<Owner> => ({
  pid: process.pid,
  host: os.hostname(),
  start: (await startTime(process.pid)) ?? ""
})

const parse = (text: string): Owner | undefined => {
  try {
    const raw: unknown = JSON.parse(text)
    if (typeof raw !== "object" || raw === null) return undefined
    const { host, pid, start } = raw as Record<string, unknown>
    return typeof pid === "number" && typeof host === "string" && typeof start === "string"
      ? { pid, host, start }
      : undefined
  } catch {
    return undefined
  }
}

/** Whether `owner` still runs. A lock from another host cannot be checked, so it counts as live. */
const alive = async (owner: Owner): Promise<boolean> => {
  if (owner.host !== os.hostname()) return true
  try {
    process.kill(owner.pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false
  }
  // The pid runs; after a reboot or in a restarted container it may be another process with the same pid.
  const start = await startTime(owner.pid)
  return owner.start === "" || start === undefined || start === owner.start
}

const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code

/** A held lock. */
export interface Lock {
  /** The stale lock this one replaced, if any. */
  readonly replaced: Owner | undefined
  /** Removes the lock file (only if it is still ours). */
  readonly release: () => Promise<void>
}

/**
 * Takes the lock at `path`, or throws `LockHeld`. A stale lock is moved aside with `rename` (atomic) and
 * checked to be the one judged stale, so two processes racing for a stale lock cannot both win.
 */
export const acquire = async (path: string): Promise<Lock> => {
  const owner = await me()
  const text = JSON.stringify(owner)
  const temp = `${path}.${process.pid}-${randomBytes(6).toString("hex")}`
  await fs.writeFile(temp, text, { mode: 0o600, flag: "wx" })
  let replaced: Owner | undefined
  try {
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        await fs.link(temp, path)
        return {
          replaced,
          release: async () => {
            const current = await fs.readFile(path, "utf8").catch(() => undefined)
            if (current === text) await fs.rm(path, { force: true })
          }
        }
      } catch (e) {
        if (code(e) !== "EEXIST") throw e
      }
      const found = await fs.readFile(path, "utf8").catch((e) => {
        if (code(e) === "ENOENT") return undefined
        throw e
      })
      if (found === undefined) continue
      const holder = parse(found)
      // A file that is not a lock we wrote (damaged, foreign) is treated as stale: we always write whole files.
      if (holder !== undefined && (await alive(holder))) throw new LockHeld(holder)
      const aside = `${path}.stale-${process.pid}-${randomBytes(6).toString("hex")}`
      try {
        await fs.rename(path, aside)
      } catch (e) {
        if (code(e) === "ENOENT") continue
        throw e
      }
      const moved = await fs.readFile(aside, "utf8")
      if (moved !== found) {
        // Another process took the lock between our read and the rename: give it back and stop.
        await fs.link(aside, path).catch(() => undefined)
        await fs.rm(aside, { force: true })
        throw new LockHeld(parse(moved) ?? { pid: 0, host: "unknown", start: "" })
      }
      await fs.rm(aside, { force: true })
      replaced = holder ?? { pid: 0, host: "unknown", start: "" }
    }
    throw new Error(`could not take the lock ${path}: it keeps changing`)
  } finally {
    await fs.rm(temp, { force: true })
  }
}
