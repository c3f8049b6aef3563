"""fbt's terminal app (Textual). Never imports torch, timm or torchvision: it reads the engine's
files and talks to the engine only by launching it."""
