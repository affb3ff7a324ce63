// Hugging Face tokenizers for MindsEye: a tokenizer directory as transformers writes it
// (tokenizer.json + tokenizer_config.json, optionally special_tokens_map.json and the chat
// template in chat_template.jinja or chat_template.json) is encoded and decoded by the maintained
// @huggingface/tokenizers, and chat templates are rendered by @huggingface/jinja with the
// variables transformers passes. New tokens (the latent queries <|latent_k|>) are added after the
// current vocabulary and written back by save().
//
//   const tok = Tokenizer.fromPretrained("checkpoints/Qwen2.5-VL-7B-Instruct");
//   const ids = tok.encode("a red cube on a table");              // [64, 2518, 23739, ...]
//   const latentIds = tok.addTokens(latentTokens(16), { special: true });
//   const prompt = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";

/** One message of a conversation; content is a string or a list of parts ({type: "image"}, {type: "text", text}). */
export interface ChatMessage {
  role: string;
  content: string | Array<Record<string, unknown>>;
  [key: string]: unknown;
}

/** Ids of the special tokens MindsEye uses; null where the tokenizer has no such token. */
export interface SpecialTokenIds {
  pad: number | null;
  eos: number | null;
  bos: number | null;
  unk: number | null;
  /** ChatML turn delimiters (Qwen). */
  imStart: number | null;
  imEnd: number | null;
  /** Qwen2-VL / Qwen2.5-VL image placeholder and its frame. */
  imagePad: number | null;
  visionStart: number | null;
  visionEnd: number | null;
}

export interface BatchEncodeOptions {
  /** Add the tokenizer's post-processor tokens (BOS/EOS where it has any). Default true, as transformers. */
  addSpecialTokens?: boolean;
  /** Side the pad tokens go on. Default: tokenizer_config.json "padding_side", else "right". */
  paddingSide?: "left" | "right";
  /** Truncate every sequence to at most this many tokens. */
  maxLength?: number;
  /** Side truncation removes tokens from. Default: tokenizer_config.json "truncation_side", else "right". */
  truncationSide?: "left" | "right";
  /** "longest" pads to the longest sequence of the batch; "max_length" to maxLength (required then). */
  padding?: "longest" | "max_length";
}

export interface BatchEncoding {
  /** [B][T] token ids, padded with the pad token. */
  inputIds: number[][];
  /** [B][T] 1 for real tokens, 0 for padding. */
  attentionMask: number[][];
}

export interface ChatTemplateOptions {
  /** Append the assistant turn opener (e.g. "<|im_start|>assistant\n"). Default false, as transformers. */
  addGenerationPrompt?: boolean;
  /** Extra template variables (transformers' **kwargs), e.g. { add_vision_id: true } or { enable_thinking: false }. */
  variables?: Record<string, unknown>;
}

/** An added token as tokenizer.json stores it in "added_tokens". */
interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

interface TokenizerJson {
  added_tokens: AddedTokenJson[];
  model: { type: string; vocab: Record<string, number> | [string, number][]; unk_token?: string | null };
  [key: string]: unknown;
}

type Json = Record<string, unknown>;

/** Where the chat template came from, so save() writes it back to the same place. */
type TemplateSource = "chat_template.jinja" | "chat_template.json" | "tokenizer_config.json" | null;

const SPECIAL_KEYS = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] as const;

/**
 * A Hugging Face tokenizer with its chat template.
 * ```ts
 * const tok = Tokenizer.fromPretrained(dir);
 * tok.encode("Hello world");                  // [9707, 1879] for Qwen2/Qwen2.5
 * tok.decode([9707, 1879]);                   // "Hello world"
 * ```
 */
export class Tokenizer {
  private hf: HfTokenizer;
  private vocabLength: number;
  private compiled: Template | null = null;

  private constructor(
    /** Directory it was loaded from (for error messages). */
    readonly source: string,
    private readonly tokenizerJson: TokenizerJson,
    private readonly config: Json,
    private readonly specialTokensMap: Json | null,
    private readonly chatTemplate: string | null,
    private readonly templateSource: TemplateSource,
    /** Token strings of bos_token, eos_token, ... after tokenizer_config / special_tokens_map resolution. */
    private readonly specialTokens: Partial<Record<(typeof SPECIAL_KEYS)[number], string>>,
  ) {
    this.hf = this.build();
    this.vocabLength = this.computeVocabLength();
  }

  /**
   * Loads a tokenizer directory: tokenizer.json and tokenizer_config.json are required;
   * special_tokens_map.json is read as transformers reads it (only when tokenizer_config.json has
   * no "added_tokens_decoder", the legacy layout); the chat template is taken from
   * chat_template.jinja, else chat_template.json (a processor's), else tokenizer_config.json.
   */
  static fromPretrained(dir: string): Tokenizer {
    const tokenizerJson = readJson(join(dir, "tokenizer.json"), "the tokenizer itself (Hugging Face tokenizers format); slow-only tokenizers (vocab.json + merges.txt) must be converted first") as TokenizerJson;
    if (!Array.isArray(tokenizerJson.added_tokens) || tokenizerJson.model === undefined) {
      throw new Error(`${join(dir, "tokenizer.json")}: expected "added_tokens" and "model" (a Hugging Face tokenizers file)`);
    }
    const config = readJson(join(dir, "tokenizer_config.json"), "the tokenizer's settings (special tokens, chat template)");
    const mapPath = join(dir, "special_tokens_map.json");
    const specialTokensMap = existsSync(mapPath) ? readJson(mapPath, "") : null;

    const specialTokens: Partial<Record<(typeof SPECIAL_KEYS)[number], string>> = {};
    const legacy = specialTokensMap !== null && config.added_tokens_decoder === undefined;
    for (const key of SPECIAL_KEYS) {
      const value = tokenString(legacy && specialTokensMap[key] !== undefined ? specialTokensMap[key] : config[key], `${dir}: "${key}"`);
      if (value !== null) specialTokens[key] = value;
    }

    let chatTemplate: string | null = null, templateSource: TemplateSource = null;
    const jinjaPath = join(dir, "chat_template.jinja"), jsonPath = join(dir, "chat_template.json");
    if (existsSync(jinjaPath)) {
      chatTemplate = readFileSync(jinjaPath, "utf8");
      templateSource = "chat_template.jinja";
    } else if (existsSync(jsonPath)) {
      const t = readJson(jsonPath, "").chat_template;
      if (typeof t !== "string") throw new Error(`${jsonPath}: expected {"chat_template": "<jinja template>"}`);
      chatTemplate = t;
      templateSource = "chat_template.json";
    } else if (config.chat_template !== undefined && config.chat_template !== null) {
      chatTemplate = defaultTemplate(config.chat_template, join(dir, "tokenizer_config.json"));
      templateSource = "tokenizer_config.json";
    }
    return new Tokenizer(dir, tokenizerJson, config, specialTokensMap, chatTemplate, templateSource, specialTokens);
  }

  private build(): HfTokenizer {
    const model = this.tokenizerJson.model;
    return new HfTokenizer(this.tokenizerJson, {
      ...this.config,
      ...this.specialTokens, // as strings (tokenizer_config.json may hold {"content": ...} objects)
      // @huggingface/tokenizers has no WordLevel class; its fallback looks the unknown token up in
      // this config, so give it the model's own, which is the one the Rust WordLevel model uses.
      ...(model.type === "WordLevel" ? { unk_token: model.unk_token ?? null } : {}),
      // transformers' default for a config without the key is now False (no clean-up of spaces).
      clean_up_tokenization_spaces: this.config.clean_up_tokenization_spaces ?? false,
    });
  }

  private computeVocabLength(): number {
    let max = -1;
    const vocab = this.tokenizerJson.model.vocab;
    const ids = Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab);
    for (const id of ids) if (id > max) max = id;
    for (const t of this.tokenizerJson.added_tokens) if (t.id > max) max = t.id;
    return max + 1;
  }

  /** Number of token ids, added tokens included (transformers' len(tokenizer)). */
  get vocabSize(): number {
    return this.vocabLength;
  }

  /** The chat template in use, or null when the tokenizer has none. */
  get template(): string | null {
    return this.chatTemplate;
  }

  /** Id of a token string (regular or added), or null when the vocabulary lacks it. */
  tokenToId(token: string): number | null {
    return this.hf.token_to_id(token) ?? null;
  }

  /** Token string of an id, or null when out of range. */
  idToToken(id: number): string | null {
    return this.hf.id_to_token(id) ?? null;
  }

  get specialTokenIds(): SpecialTokenIds {
    const id = (t: string | undefined) => (t === undefined ? null : this.tokenToId(t));
    return {
      pad: id(this.specialTokens.pad_token),
      eos: id(this.specialTokens.eos_token),
      bos: id(this.specialTokens.bos_token),
      unk: id(this.specialTokens.unk_token),
      imStart: this.tokenToId("<|im_start|>"),
      imEnd: this.tokenToId("<|im_end|>"),
      imagePad: this.tokenToId("<|image_pad|>"),
      visionStart: this.tokenToId("<|vision_start|>"),
      visionEnd: this.tokenToId("<|vision_end|>"),
    };
  }

  /** Token ids of text. Special tokens written in the text (e.g. "<|im_start|>") become their ids. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    // A token the vocabulary lacks comes back as an undefined id when there is no unk_token.
    const { ids, tokens }: { ids: (number | undefined)[]; tokens: string[] } = this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true });
    const bad = ids.findIndex((id) => id === undefined);
    if (bad !== -1) throw new Error(`encode: "${tokens[bad]}" is not in the vocabulary of ${this.source}, which has no unk_token`);
    return ids as number[];
  }

  /** Text of token ids; skipSpecialTokens drops tokens marked special (as transformers' fast tokenizers). */
  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return "";
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabLength) {
        throw new RangeError(`decode: token id ${id} is not in the vocabulary of ${this.source} (ids 0..${this.vocabLength - 1})`);
      }
    }
    return this.hf.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /**
   * Encodes a batch, truncating to maxLength and padding to a rectangle with attention masks.
   * ```ts
   * tok.encodeBatch(["a cat", "a red cube"], { paddingSide: "left" });
   * // { inputIds: [[151643, 64, 8251], [64, 2518, 23739]], attentionMask: [[0, 1, 1], [1, 1, 1]] }
   * ```
   */
  encodeBatch(texts: readonly string[], opts: BatchEncodeOptions = {}): BatchEncoding {
    const padding = opts.padding ?? "longest";
    const { maxLength } = opts;
    if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 1)) throw new RangeError(`encodeBatch: maxLength must be a positive integer, got ${maxLength}`);
    if (padding === "max_length" && maxLength === undefined) throw new RangeError(`encodeBatch: padding "max_length" needs maxLength`);
    const paddingSide = opts.paddingSide ?? sideOf(this.config.padding_side, "padding_side", this.source);
    const truncationSide = opts.truncationSide ?? sideOf(this.config.truncation_side, "truncation_side", this.source);
    const pad = this.specialTokenIds.pad;
    const seqs = texts.map((t) => {
      const ids = this.encode(t, { addSpecialTokens: opts.addSpecialTokens ?? true });
      if (maxLength === undefined || ids.length <= maxLength) return ids;
      return truncationSide === "right" ? ids.slice(0, maxLength) : ids.slice(ids.length - maxLength);
    });
    const width = padding === "max_length" ? maxLength! : Math.max(0, ...seqs.map((s) => s.length));
    if (pad === null && seqs.some((s) => s.length < width)) {
      throw new Error(`encodeBatch: ${this.source} has no pad_token, so sequences of different lengths cannot be padded (set "pad_token" in tokenizer_config.json)`);
    }
    const inputIds: number[][] = [], attentionMask: number[][] = [];
    for (const s of seqs) {
      const fill = new Array<number>(width - s.length);
      const ids = paddingSide === "right" ? [...s, ...fill.fill(pad!)] : [...fill.fill(pad!), ...s];
      const ones = new Array<number>(s.length).fill(1), zeros = new Array<number>(width - s.length).fill(0);
      inputIds.push(ids);
      attentionMask.push(paddingSide === "right" ? [...ones, ...zeros] : [...zeros, ...ones]);
    }
    return { inputIds, attentionMask };
  }

  /**
   * Adds tokens after the current vocabulary (ids vocabSize, vocabSize+1, ...) and returns the id
   * of every token asked for, in order; a token the vocabulary already has keeps its id, so adding
   * the same tokens again is a no-op. Special tokens are never split, and decode drops them under
   * skipSpecialTokens. The model's embedding may need resizing afterwards (latent_head.ts).
   */
  addTokens(tokens: readonly string[], opts: { special?: boolean } = {}): number[] {
    const special = opts.special ?? false;
    const ids: number[] = [];
    let added = false;
    for (const content of tokens) {
      if (content.length === 0) throw new RangeError("addTokens: empty token string");
      const existing = this.tokenToId(content);
      if (existing !== null) {
        ids.push(existing);
        continue;
      }
      const id = this.vocabLength++;
      // transformers' AddedToken defaults: normalized = not special, no stripping, not single-word.
      const entry: AddedTokenJson = { id, content, single_word: false, lstrip: false, rstrip: false, normalized: !special, special };
      this.tokenizerJson.added_tokens.push(entry);
      const decoder = (this.config.added_tokens_decoder ?? null) as Record<string, unknown> | null;
      if (decoder !== null) {
        decoder[String(id)] = { content, lstrip: false, normalized: !special, rstrip: false, single_word: false, special };
      }
      ids.push(id);
      added = true;
    }
    if (added) this.hf = this.build();
    return ids;
  }

  /**
   * Renders the tokenizer's chat template exactly as transformers' apply_chat_template: variables
   * messages, add_generation_prompt, tools = documents = none, the special tokens (bos_token,
   * eos_token, ...) and raise_exception; trim_blocks and lstrip_blocks on. With tokenize the
   * rendered text is encoded without adding special tokens (the template already holds them).
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions & { tokenize: true }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], opts?: ChatTemplateOptions & { tokenize?: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions & { tokenize?: boolean } = {}): string | number[] {
    if (this.chatTemplate === null) {
      throw new Error(`${this.source}: no chat template (looked for chat_template.jinja, chat_template.json and "chat_template" in tokenizer_config.json)`);
    }
    const variables: Record<string, unknown> = {
      ...this.specialTokens,
      ...(opts.variables ?? {}),
      messages,
      tools: null,
      documents: null,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    };
    const additional = this.config.additional_special_tokens;
    if (Array.isArray(additional)) variables.additional_special_tokens = additional.map((t) => tokenString(t, "additional_special_tokens"));
    let text: string;
    try {
      this.compiled ??= new Template(this.chatTemplate);
      text = this.compiled.render(variables);
    } catch (e) {
      throw new Error(`chat template of ${this.source} (${this.templateSource}) failed: ${e instanceof Error ? e.message : String(e)}`);
    }
    return opts.tokenize ? this.encode(text, { addSpecialTokens: false }) : text;
  }

  /**
   * Writes a directory that fromPretrained loads again: tokenizer.json and tokenizer_config.json
   * (with the added tokens), special_tokens_map.json if it was read, and the chat template in the
   * file it came from.
   */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    writeAtomic(join(dir, "tokenizer.json"), JSON.stringify(this.tokenizerJson, null, 2));
    writeAtomic(join(dir, "tokenizer_config.json"), JSON.stringify(this.config, null, 2) + "\n");
    if (this.specialTokensMap !== null) writeAtomic(join(dir, "special_tokens_map.json"), JSON.stringify(this.specialTokensMap, null, 2) + "\n");
    if (this.templateSource === "chat_template.jinja") writeAtomic(join(dir, "chat_template.jinja"), this.chatTemplate!);
    if (this.templateSource === "chat_template.json") writeAtomic(join(dir, "chat_template.json"), JSON.stringify({ chat_template: this.chatTemplate }, null, 2) + "\n");
  }
}

function readJson(path: string, what: string): Json {
  if (!existsSync(path)) throw new Error(`${path}: not found${what ? ` (${what})` : ""}`);
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  return v as Json;
}

/** A special-token entry of tokenizer_config.json: a string, an AddedToken object, or null. */
function tokenString(v: unknown, where: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v === "string") return v;
  if (typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  throw new Error(`${where}: expected a token string or {"content": ...}, got ${JSON.stringify(v)}`);
}

/** tokenizer_config.json "chat_template": a string, or a list of {name, template} (the "default" one is used). */
function defaultTemplate(v: unknown, where: string): string {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v as { name?: unknown; template?: unknown }[];
    const d = named.find((t) => t.name === "default");
    if (d !== undefined && typeof d.template === "string") return d.template;
    throw new Error(`${where}: "chat_template" is a list without a "default" entry (names: ${named.map((t) => String(t.name)).join(", ")})`);
  }
  throw new Error(`${where}: "chat_template" must be a string or a list of {name, template}`);
}

function sideOf(v: unknown, key: string, source: string): "left" | "right" {
  if (v === undefined || v === null) return "right";
  if (v === "left" || v === "right") return v;
  throw new Error(`${source}/tokenizer_config.json: "${key}" must be "left" or "right", got ${JSON.stringify(v)}`);
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}
