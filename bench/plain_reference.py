"""Plain baseline for the benchmarks: the tutorial's reference script, verbatim.

A copy of ../shared/reference/seed_softmax.py, kept here so the benchmark is self-contained.

Softmax regression on an 8-sample, 4-feature, 3-class toy set: nn.Linear(4, 3),
F.cross_entropy, plain SGD with lr=0.1, 1000 epochs (1001 steps), seed 1.
The pipeline's default run must reproduce its printed costs exactly;
expected_output.txt beside this file is what it prints with torch 2.13.0 on CPU.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

torch.manual_seed(1)

x_train = [[1, 2, 1, 1],
           [2, 1, 3, 2],
           [3, 1, 3, 4],
           [4, 1, 5, 5],
           [1, 7, 5, 5],
           [1, 2, 5, 6],
           [1, 6, 6, 6],
           [1, 7, 7, 7]]
y_train = [2, 2, 2, 1, 1, 1, 0, 0]
x_train = torch.FloatTensor(x_train)
y_train = torch.LongTensor(y_train)

model = nn.Linear(4, 3)
optimizer = optim.SGD(model.parameters(), lr=0.1)

nb_epochs = 1000
for epoch in range(nb_epochs + 1):
    prediction = model(x_train)
    cost = F.cross_entropy(prediction, y_train)
    optimizer.zero_grad()
    cost.backward()
    optimizer.step()
    if epoch % 100 == 0:
        print('Epoch {:4d}/{} Cost: {:.6f}'.format(epoch, nb_epochs, cost.item()))
