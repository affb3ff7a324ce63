// Parsing of the CLI's option values that several commands share.
import { ConfigError } from "../config/errors.js";

/** `text` as a decimal integer ≥ 0 (digits only, surrounding spaces allowed), else null. */
const decimalInt = (text: string): number | null => (/^\d+$/.test(text.trim()) ? Number(text) : null);

/** `text` as a positive decimal integer, or a ConfigError naming the option (`flag`, e.g. "--jobs"). */
export function positiveInt(flag: string, text: string): number {
  const n = decimalInt(text);
  if (n === null || n < 1) throw new ConfigError(`${flag} must be a positive integer, got "${text}"`);
  return n;
}

/** `text` as a decimal integer ≥ 0 (a seed), or a ConfigError naming the option. */
export function nonNegativeInt(flag: string, text: string): number {
  const n = decimalInt(text);
  if (n === null) throw new ConfigError(`${flag} must be an integer ≥ 0, got "${text}"`);
  return n;
}
