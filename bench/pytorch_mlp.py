"""The benchmarks' PyTorch model: 3072-2048-2048-10, nn.ModuleList `layers`, ReLU between (raw logits)."""
import torch
import torch.nn as nn

SIZES = [3072, 2048, 2048, 10]


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x
