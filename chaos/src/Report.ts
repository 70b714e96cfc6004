/**
 * The fault suite's results: one row per fault, printed as a Markdown table (the table docs/reliability.md shows).
 */

/** One fault's outcome. `problems` empty means every promise held. */
export interface Row {
  readonly fault: string
  readonly seconds: number
  readonly detail: string
  readonly figures: string
  readonly problems: ReadonlyArray<string>
}

const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ")

/** The rows as a Markdown table. */
export const table = (rows: ReadonlyArray<Row>): string =>
  [
    "| fault | result | time | what was done | figures |",
    "|---|---|---|---|---|",
    ...rows.map((row) =>
      `| ${cell(row.fault)} | ${row.problems.length === 0 ? "ok" : `**FAIL**: ${cell(row.problems.join("; "))}`} | ` +
      `${row.seconds.toFixed(1)} s | ${cell(row.detail)} | ${cell(row.figures)} |`
    )
  ].join("\n")
