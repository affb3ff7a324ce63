// Turning (images, text, answer) into token ids and labels for a VLM, the same way in training
// and evaluation: the tokenizer's own chat template renders the user turn (images as
// <|vision_start|><|image_pad|><|vision_end|>), each image pad is expanded to the number of
// vision tokens an image becomes, and the assistant's answer is what the loss sees.
//
//   const p = buildPrompt(tok, { images: 1, text: "Is there a red circle?\nAnswer the question using a single word or phrase." }, 16);
//   const ex = buildExample(tok, { images: 1, text: "..." , answer: "yes" }, 16);  // ids, labels (-100 on the prompt)
//
// The prompt format is the family's (PromptFormat): CHATML above (Qwen, MindsEye), VICUNA_V1 for
// LLaVA-1.5 ("USER: <image>\n{text} ASSISTANT:", the answer ended by the tokenizer's EOS </s>).
// A format other than ChatML renders with the tokenizer's own chat template when it has one
// (llava-hf ships it as chat_template.json) and with the format's documented text otherwise.
import type { Tokenizer } from "./tokenizer.js";
import { IGNORE_INDEX } from "../objectives/next_token.js";

export interface Turn {
  /** Images of the turn, in order (before the text unless imagesAfterText). */
  images: number;
  text: string;
  /** The text first, then the images (a model whose config.json says image_position: after_text). */
  imagesAfterText?: boolean;
}

const IMAGE_TOKEN = "<|image_pad|>";

/** How a family writes a conversation for the LLM. */
export interface PromptFormat {
  readonly name: string;
  /** The image placeholder as text (one per image in the rendered prompt, expanded afterwards). */
  readonly imageToken: string;
  /** The token ending an answer and generation: ChatML's <|im_end|> or the tokenizer's eos_token. */
  readonly end: "im_end" | "eos";
  /** Encode with the tokenizer's post-processor tokens (LLaVA's processor prepends <s>). */
  readonly addSpecialTokens: boolean;
  /** The user turn and the assistant's opening when the tokenizer has no chat template; null: a template is required. */
  readonly fallback: ((content: readonly Record<string, unknown>[]) => string) | null;
  /** Always the format's own text, never the tokenizer's template (InternVL's chat() builds its prompt itself). */
  readonly ownText?: boolean;
}

/** ChatML with Qwen2-VL's <|image_pad|> (Qwen2.5-VL, MindsEye VLMs): the tokenizer's template is required. */
export const CHATML: PromptFormat = Object.freeze({ name: "chatml", imageToken: IMAGE_TOKEN, end: "im_end", addSpecialTokens: false, fallback: null });

/**
 * LLaVA-1.5's Vicuna v1 conversation as llava-hf's chat_template.json renders it: "USER: ", each
 * image as "<image>\n" (images first), each text part + " ", then "ASSISTANT:"; the answer is
 * followed by </s> (eos_token) and the processor's tokenizer call prepends <s>.
 */
export const VICUNA_V1: PromptFormat = Object.freeze({
  name: "vicuna_v1", imageToken: "<image>", end: "eos", addSpecialTokens: true,
  fallback: (content: readonly Record<string, unknown>[]) => "USER: " + content.filter((c) => c.type === "image").map(() => "<image>\n").join("") +
    content.filter((c) => c.type === "text").map((c) => `${c.text as string} `).join("") + "ASSISTANT:",
});

/** The system message of InternVL2.5's "internvl2_5" conversation template (its conversation.py), which chat() writes first. */
export const INTERNVL2_5_SYSTEM_MESSAGE = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。";

/**
 * InternVL2.5's ChatML as InternVLChatModel.chat writes it with the internvl2_5 template: the
 * system turn "<|im_start|>system\n{INTERNVL2_5_SYSTEM_MESSAGE}<|im_end|>\n", then
 * "<|im_start|>user\n", each image as "<image>\n" (images first) replaced by "<img>" +
 * <IMG_CONTEXT> (img_context_token_id, expanded to num_image_token × tiles) + "</img>", the text,
 * "<|im_end|>\n<|im_start|>assistant\n"; the answer is followed by <|im_end|>.
 */
export const INTERNVL_CHATML: PromptFormat = Object.freeze({
  name: "internvl_chatml", imageToken: "<IMG_CONTEXT>", end: "im_end", addSpecialTokens: false, ownText: true,
  fallback: (content: readonly Record<string, unknown>[]) => `<|im_start|>system\n${INTERNVL2_5_SYSTEM_MESSAGE}<|im_end|>\n<|im_start|>user\n` +
    content.map((c) => c.type === "image" ? "<img><IMG_CONTEXT></img>\n" : (c.text as string)).join("") + "<|im_end|>\n<|im_start|>assistant\n",
});

/** The user turn (content parts) and the assistant's opening as text: the tokenizer's template, else the format's own text. */
export function renderUserTurn(tok: Tokenizer, format: PromptFormat, content: Record<string, unknown>[]): string {
  if (format.fallback !== null && (tok.template === null || format.ownText === true)) return format.fallback(content);
  return tok.applyChatTemplate([{ role: "user", content }], { addGenerationPrompt: true }) as string;
}

/** The id of the format's end token (answers end with it, generation stops at it), or null when the tokenizer lacks it. */
export function endTokenId(tok: Tokenizer, format: PromptFormat): number | null {
  return format.end === "im_end" ? tok.specialTokenIds.imEnd : tok.specialTokenIds.eos;
}

/** The id of the format's image placeholder, or null when the tokenizer lacks it. */
export function imageTokenId(tok: Tokenizer, format: PromptFormat): number | null {
  return format === CHATML ? tok.specialTokenIds.imagePad : tok.tokenToId(format.imageToken);
}

/** The end token's name in messages. */
export function endTokenName(format: PromptFormat): string {
  return format.end === "im_end" ? "<|im_end|>" : "eos_token";
}

function requiredOf(tok: Tokenizer, format: PromptFormat, what: "image" | "end"): number {
  if (format === CHATML) return required(tok, what === "image" ? "imagePad" : "imEnd");
  const id = what === "image" ? imageTokenId(tok, format) : endTokenId(tok, format);
  if (id === null) {
    throw new Error(what === "image"
      ? `the tokenizer ${tok.source} lacks the image token ${format.imageToken}, which ${format.name} prompts need; add it to tokenizer.json "added_tokens" (special: true), as llava-hf's tokenizer has it`
      : `the tokenizer ${tok.source} has no eos_token (the end of an answer in ${format.name} prompts); set "eos_token" in tokenizer_config.json (LLaVA-1.5: "</s>")`);
  }
  return id;
}

function required(tok: Tokenizer, name: "imagePad" | "imEnd"): number {
  const id = tok.specialTokenIds[name];
  if (id === null) {
    throw new Error(name === "imagePad"
      ? `the tokenizer ${tok.source} lacks the image token ${IMAGE_TOKEN} (Qwen2-VL's image placeholder), which VLM prompts need; use a Qwen2-VL-style tokenizer that has it as an added special token`
      : `the tokenizer ${tok.source} lacks <|im_end|> (the end of a chat turn), which VLM prompts need; use a ChatML (Qwen-style) tokenizer`);
  }
  return id;
}

/** Whether the tokenizer turns the text "<|image_pad|>" into that one token (an added token), not pieces of it. */
function encodesImageToken(tok: Tokenizer, id: number): boolean {
  try {
    const ids = tok.encode(IMAGE_TOKEN, { addSpecialTokens: false });
    return ids.length === 1 && ids[0] === id;
  } catch {
    return false; // pieces the vocabulary lacks
  }
}

/** The rendered prompt must hold one image token per image: says why it does not. */
function checkImageTokens(tok: Tokenizer, ids: readonly number[], padId: number, images: number): void {
  const pads = ids.filter((id) => id === padId).length;
  if (pads === images) return;
  if (!encodesImageToken(tok, padId)) {
    throw new Error(
      `the tokenizer ${tok.source} lacks the image token ${IMAGE_TOKEN} as one token: its vocabulary has it (id ${padId}) but it is not an added token, so the text "${IMAGE_TOKEN}" ` +
        `is split into pieces and the prompt gets ${pads} image tokens for ${images} image(s); declare it in tokenizer.json "added_tokens" (special: true), as Qwen2-VL's tokenizer does`,
    );
  }
  throw new Error(`the chat template of ${tok.source} put ${pads} ${IMAGE_TOKEN} tokens in a prompt with ${images} image(s); it must render each {"type": "image"} part as <|vision_start|>${IMAGE_TOKEN}<|vision_end|>, as Qwen2-VL's template does`);
}

/**
 * Replaces each image pad with `perImage` copies (as Qwen2-VL's processor does); a list gives
 * each image its own count, in order (Qwen2.5-VL's dynamic resolution, InternVL's tiles).
 */
export function expandImagePads(ids: readonly number[], padId: number, perImage: number | readonly number[]): number[] {
  let image = 0;
  return ids.flatMap((id) => {
    if (id !== padId) return [id];
    const n = typeof perImage === "number" ? perImage : perImage[image++];
    if (n === undefined) throw new RangeError(`expandImagePads: the prompt holds more image tokens than the ${(perImage as readonly number[]).length} counts given`);
    return Array<number>(n).fill(padId);
  });
}

/**
 * The user turn and the assistant's opening, as ids with expanded image pads: `tokensPerImage`
 * tokens for every image, or one count per image.
 */
export function buildPrompt(tok: Tokenizer, turn: Turn, tokensPerImage: number | readonly number[], format: PromptFormat = CHATML): number[] {
  if (typeof tokensPerImage !== "number" && tokensPerImage.length !== turn.images) {
    throw new RangeError(`buildPrompt: ${tokensPerImage.length} token counts for ${turn.images} image(s)`);
  }
  if (format !== CHATML) return buildFormatPrompt(tok, turn, tokensPerImage, format);
  const imageParts = Array.from({ length: turn.images }, () => ({ type: "image" })), textPart = { type: "text", text: turn.text };
  const content = turn.imagesAfterText ? [textPart, ...imageParts] : [...imageParts, textPart];
  const text = tok.applyChatTemplate([{ role: "user", content }], { addGenerationPrompt: true }) as string;
  const ids = tok.encode(text, { addSpecialTokens: false });
  if (turn.images === 0 && tok.specialTokenIds.imagePad === null) return ids; // text only: no image token needed
  const padId = required(tok, "imagePad");
  checkImageTokens(tok, ids, padId, turn.images);
  return expandImagePads(ids, padId, tokensPerImage);
}

/** A family's own format: the template (or the format's text), one placeholder per image, expanded. */
function buildFormatPrompt(tok: Tokenizer, turn: Turn, tokensPerImage: number | readonly number[], format: PromptFormat): number[] {
  const imageParts = Array.from({ length: turn.images }, () => ({ type: "image" })), textPart = { type: "text", text: turn.text };
  const ids = tok.encode(renderUserTurn(tok, format, turn.imagesAfterText ? [textPart, ...imageParts] : [...imageParts, textPart]), { addSpecialTokens: format.addSpecialTokens });
  const padId = requiredOf(tok, format, "image");
  const pads = ids.filter((id) => id === padId).length;
  if (pads !== turn.images) {
    throw new Error(`the ${format.name} prompt of ${tok.source} holds ${pads} ${format.imageToken} tokens for ${turn.images} image(s); the chat template must render each {"type": "image"} part as ${format.imageToken}, and tokenizer.json must hold ${format.imageToken} as an added token (special: true) so that it is not split`);
  }
  return expandImagePads(ids, padId, tokensPerImage);
}

/** A training example: the prompt, then the answer and the format's end token (<|im_end|>, or </s>); labels only on the latter. */
export function buildExample(tok: Tokenizer, turn: Turn & { answer: string }, tokensPerImage: number | readonly number[], format: PromptFormat = CHATML): { ids: number[]; labels: number[] } {
  const prompt = buildPrompt(tok, turn, tokensPerImage, format);
  const answer = [...tok.encode(turn.answer, { addSpecialTokens: false }), requiredOf(tok, format, "end")];
  return { ids: [...prompt, ...answer], labels: [...prompt.map(() => IGNORE_INDEX), ...answer] };
}

/**
 * Right-pads examples into int64 rows (training): ids with padId, labels with IGNORE_INDEX,
 * attention mask 1 on tokens. Returns plain arrays; the caller makes tensors.
 */
export function padRight(examples: { ids: number[]; labels: number[] }[], padId: number): { ids: number[][]; labels: number[][]; mask: number[][] } {
  const T = Math.max(...examples.map((e) => e.ids.length));
  const fill = <V>(row: V[], v: V) => [...row, ...Array<V>(T - row.length).fill(v)];
  return {
    ids: examples.map((e) => fill(e.ids, padId)),
    labels: examples.map((e) => fill(e.labels, IGNORE_INDEX)),
    mask: examples.map((e) => fill(e.ids.map(() => 1), 0)),
  };
}

/** The generated answer as text: up to the format's end token (<|im_end|>), special tokens dropped. */
export function decodeAnswer(tok: Tokenizer, tokens: readonly number[], format: PromptFormat = CHATML): string {
  const end = tokens.indexOf(requiredOf(tok, format, "end"));
  return tok.decode(end >= 0 ? tokens.slice(0, end) : tokens, { skipSpecialTokens: true }).trim();
}
