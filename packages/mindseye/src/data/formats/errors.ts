// Bad input never stops a long run silently nor kills it for one bad line: a malformed record
// (or a corrupt image) is skipped, counted and remembered with its file and record; past a
// configurable error rate the run stops with a message that says how many were bad and where.
// A problem with a whole file (not JSON, a column missing) is a DataFormatError at once.

/** Where a record came from: the file and the record inside it ("line 812", "key 000010005", "row 3"). */
export interface RecordSource {
  readonly file: string;
  readonly record: string;
}

/** A file that cannot be read as the format it should be in: names the file, says what to do. */
export class DataFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DataFormatError";
  }
}

/** Thrown by record parsers; the reader catches it and counts a skip. */
export class MalformedRecord extends Error {
  constructor(readonly source: RecordSource, readonly reason: string) {
    super(`${source.file} ${source.record}: ${reason}`);
    this.name = "MalformedRecord";
  }
}

/** Too many bad records: the run stops. */
export class ErrorRateExceeded extends DataFormatError {
  constructor(message: string, readonly report: SkipReport) {
    super(message);
    this.name = "ErrorRateExceeded";
  }
}

export interface ErrorPolicy {
  /** Stop once skipped / seen exceeds this fraction (0.01 = 1%). */
  readonly maxErrorRate: number;
  /** The rate is only judged after this many records, so two bad records out of three do not stop a run. */
  readonly minRecords: number;
  /** How many skipped records to remember by name for the report. */
  readonly keepExamples: number;
}

export const DEFAULT_ERROR_POLICY: ErrorPolicy = Object.freeze({ maxErrorRate: 0.01, minRecords: 100, keepExamples: 10 });

export interface SkippedRecord {
  readonly source: RecordSource;
  readonly reason: string;
}

export interface SkipReport {
  /** What was being read, e.g. "coco" or "images". */
  readonly what: string;
  /** Records seen: good + skipped. */
  readonly seen: number;
  readonly skipped: number;
  /** The first `keepExamples` skipped records, in order. */
  readonly examples: readonly SkippedRecord[];
  /** Records left out on purpose, not errors: "not downloaded" → 1200, "no image" → 3. */
  readonly omitted: Readonly<Record<string, number>>;
}

/**
 * Counts good and bad records of one dataset (share one counter across its files) and stops the
 * run past the policy's error rate.
 * ```ts
 * const errors = new SkipCounter("cc3m", { maxErrorRate: 0.01, minRecords: 1000 });
 * for await (const pair of readCc3m(opts, { errors })) { ... }
 * console.log(errors.summary());
 * ```
 */
export class SkipCounter {
  readonly policy: ErrorPolicy;
  private good = 0;
  private bad = 0;
  private readonly examples: SkippedRecord[] = [];
  private readonly omittedCounts: Record<string, number> = {};

  constructor(readonly what: string, policy: Partial<ErrorPolicy> = {}) {
    const p = { ...DEFAULT_ERROR_POLICY, ...policy };
    if (!(p.maxErrorRate >= 0 && p.maxErrorRate <= 1)) throw new RangeError(`maxErrorRate must be in [0, 1], got ${p.maxErrorRate}`);
    if (!(Number.isInteger(p.minRecords) && p.minRecords >= 1)) throw new RangeError(`minRecords must be a positive integer, got ${p.minRecords}`);
    if (!(Number.isInteger(p.keepExamples) && p.keepExamples >= 0)) throw new RangeError(`keepExamples must be a non-negative integer, got ${p.keepExamples}`);
    this.policy = Object.freeze(p);
  }

  /** One good record. */
  ok(): void {
    this.good++;
    this.check();
  }

  /** One malformed record, skipped. Throws ErrorRateExceeded once the rate is past the policy. */
  skip(source: RecordSource, reason: string): void {
    this.bad++;
    if (this.examples.length < this.policy.keepExamples) this.examples.push({ source, reason });
    this.check();
  }

  /** A record left out on purpose (a failed download, a problem without an image): counted, not an error. */
  omit(why: string, n = 1): void {
    this.omittedCounts[why] = (this.omittedCounts[why] ?? 0) + n;
  }

  get seen(): number {
    return this.good + this.bad;
  }

  get skipped(): number {
    return this.bad;
  }

  report(): SkipReport {
    return { what: this.what, seen: this.seen, skipped: this.bad, examples: [...this.examples], omitted: { ...this.omittedCounts } };
  }

  /** One paragraph for logs: counts, rate, the first skipped records. */
  summary(): string {
    const head = `${this.what}: ${this.bad} of ${this.seen} records skipped (${percent(this.bad, this.seen)})`;
    const omitted = Object.entries(this.omittedCounts).map(([k, n]) => `${n} ${k}`);
    const lines = [omitted.length > 0 ? `${head}; left out: ${omitted.join(", ")}` : head];
    for (const e of this.examples) lines.push(`  ${e.source.file} ${e.source.record}: ${e.reason}`);
    if (this.bad > this.examples.length) lines.push(`  … and ${this.bad - this.examples.length} more`);
    return lines.join("\n");
  }

  private check(): void {
    const seen = this.seen;
    if (seen < this.policy.minRecords || this.bad / seen <= this.policy.maxErrorRate) return;
    const where = this.examples.map((e) => `\n  ${e.source.file} ${e.source.record}: ${e.reason}`).join("");
    throw new ErrorRateExceeded(
      `stopped reading ${this.what}: ${this.bad} of ${seen} records were malformed (${percent(this.bad, seen)}), ` +
        `above maxErrorRate ${percent(this.policy.maxErrorRate, 1)} (judged after ${this.policy.minRecords} records). ` +
        `First ones:${where}\nFix or remove those records, or raise maxErrorRate if they are expected.`,
      this.report(),
    );
  }
}

function percent(n: number, d: number): string {
  return d === 0 ? "0%" : `${+((100 * n) / d).toFixed(2)}%`;
}

/** The message of an unknown thrown value. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Options every reader takes. */
export interface ReadOptions {
  /**
   * Counts skipped records and stops past the error rate. Pass one to read its report afterwards
   * or to share it across several readers of one dataset; by default each read makes its own
   * with DEFAULT_ERROR_POLICY.
   */
  readonly errors?: SkipCounter;
}

/** The counter a reader uses: the caller's, or a fresh one with the default policy. */
export function counterFor(what: string, options: ReadOptions | undefined): SkipCounter {
  return options?.errors ?? new SkipCounter(what);
}

/**
 * Runs one record's parser: its result counts as a good record; a MalformedRecord it throws is
 * counted as a skip (→ null); `build` returns null itself for a record left out on purpose
 * (after `errors.omit`). Any other error propagates, as does ErrorRateExceeded.
 */
export async function attempt<T>(errors: SkipCounter, build: () => T | null | Promise<T | null>): Promise<T | null> {
  let value: T | null;
  try {
    value = await build();
  } catch (e) {
    if (!(e instanceof MalformedRecord)) throw e;
    errors.skip(e.source, e.reason);
    return null;
  }
  if (value !== null) errors.ok();
  return value;
}
