// Checkpoint input and output: safetensors files and Hugging Face sharded checkpoints.
export {
  readHeader,
  loadMetadata,
  loadFile,
  loadFileInto,
  saveFile,
  saveSharded,
  loadSharded,
  loadShardedInto,
  SafetensorsError,
  SAFETENSORS_DTYPE,
  MAX_HEADER_BYTES,
  DEFAULT_MAX_SHARD_BYTES,
} from "./safetensors.js";
export type { TensorInfo, SafetensorsHeader, LoadOptions, IntoOptions, NonFiniteCount, ShardOptions, TensorDict } from "./safetensors.js";
