// Turning (images, text, answer) into token ids and labels for a VLM, the same way in training
// and evaluation: the tokenizer's own chat template renders the user turn (images as
// <|vision_start|><|image_pad|><|vision_end|>), each image pad is expanded to the number of
// vision tokens an image becomes, and the assistant's answer is what the loss sees.
//
//   const p = buildPrompt(tok, { images: 1, text: "Is there a red circle?\nAnswer the question using a single word or phrase." }, 16);
//   const ex = buildExample(tok, { images: 1, text: "..." , answer: "yes" }, 16);  // ids, labels (-100 on the prompt)
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
export function buildPrompt(tok: Tokenizer, turn: Turn, tokensPerImage: number | readonly number[]): number[] {
  if (typeof tokensPerImage !== "number" && tokensPerImage.length !== turn.images) {
    throw new RangeError(`buildPrompt: ${tokensPerImage.length} token counts for ${turn.images} image(s)`);
  }
  const imageParts = Array.from({ length: turn.images }, () => ({ type: "image" })), textPart = { type: "text", text: turn.text };
  const content = turn.imagesAfterText ? [textPart, ...imageParts] : [...imageParts, textPart];
  const text = tok.applyChatTemplate([{ role: "user", content }], { addGenerationPrompt: true }) as string;
  const ids = tok.encode(text, { addSpecialTokens: false });
  if (turn.images === 0 && tok.specialTokenIds.imagePad === null) return ids; // text only: no image token needed
  const padId = required(tok, "imagePad");
  checkImageTokens(tok, ids, padId, turn.images);
  return expandImagePads(ids, padId, tokensPerImage);
}

/** A training example: the prompt, then the answer and <|im_end|>; labels only on the latter. */
export function buildExample(tok: Tokenizer, turn: Turn & { answer: string }, tokensPerImage: number | readonly number[]): { ids: number[]; labels: number[] } {
  const prompt = buildPrompt(tok, turn, tokensPerImage);
  const answer = [...tok.encode(turn.answer, { addSpecialTokens: false }), required(tok, "imEnd")];
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

/** The generated answer as text: up to <|im_end|>, special tokens dropped. */
export function decodeAnswer(tok: Tokenizer, tokens: readonly number[]): string {
  const end = tokens.indexOf(required(tok, "imEnd"));
  return tok.decode(end >= 0 ? tokens.slice(0, end) : tokens, { skipSpecialTokens: true }).trim();
}
