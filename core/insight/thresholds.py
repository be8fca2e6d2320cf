"""Every threshold the verdict rules use, each with the reason for its value: a rule of thumb
from the course notes (seeds/000-004) or the well-known practice they stand on, and what the
example runs measured (``examples/``, seed 0, CPU, one thread; examples/README.md has the
runs). "Healthy" runs below are the well set-up ones: kaiming_relu, digits_mlp, deep_relu_kaiming
(which does overfit after epoch 6, and gets that verdict), tanh_init_xavier, cnn_digits,
cnn_augment, pca_whitening, lstm_sine, toy_text_lstm, wine_standardized and the lr sweep's 0.5
and 0.1 trials."""

# --- windows ------------------------------------------------------------------------------------

# "Early" means the first five epochs: the notes choose a learning rate by comparing short runs'
# curves, and examples/lr_sweep.json compares five-epoch runs.
EARLY_EPOCHS = 5

# A trend (a linear fall, a rise after the best epoch) needs at least three epoch values; two
# points are always a straight line.
MIN_TREND_EPOCHS = 3

# --- learning rate ------------------------------------------------------------------------------

# lr_too_high: an epoch's training loss this much above the previous epoch's "rises". lr 2.0
# rose 2.712 → 2.903 (+7.0%) at epoch 2; a lower lr's epoch losses only fall.
LR_HIGH_RISE = 0.05

# ... and the early epochs made no progress: the loss at the end of the early window is still
# above this share of the first epoch's. A noisy but fine run also bumps up once (overfit_plain
# +55% at epoch 2, 3 batches an epoch) yet ends its first five epochs at 0.42 of epoch 1's loss
# (overfit_regularized 0.58); lr 2.0 bounced back to 0.84 (2.712 → 2.274, accuracy 0.34 → 0.11).
LR_HIGH_NO_PROGRESS = 0.75

# ... or an early epoch's mean training loss is this many times the loss the run started at (the
# larger of the loss measured before any update and ln C): the steps overshoot so far that the
# model is worse than it was untrained. lr 2.0 over seeds 0-11 (examples/lr_sweep.json's trial):
# 1.8× to 2e8× in ten of them (8.75 against 3.08, 139.6 against 3.08, ...), 1.02× and 1.33× in the
# other two (seed 0 is caught by its rise instead). Lower rates over seeds 0-2: at most 1.09× (lr
# 0.001, whose first epoch barely moves from a start measured on one batch), 0.5× at lr 0.1.
LR_HIGH_BLOWUP = 1.5

# ... unless the run has recovered since: its latest epoch's training loss is under this share of
# where it started. A small noisy set can bump once and then learn (overfit_plain: 1.09 at start,
# 2.43 at epoch 2 on 3 batches an epoch, 0.19 at the end = 0.17×); lr 2.0's runs end their five
# epochs at 0.5× to 0.84× of their start.
LR_HIGH_RECOVERED = 0.5

# A suggested learning rate moves one decade: the notes' lr comparison sweeps values a factor of
# about ten apart (lr_sweep.json: 2.0, 0.5, 0.1, 0.01, 0.001). 2.0 ÷ 10 = 0.2 lies between the
# sweep's two best trials.
LR_STEP = 10.0
LR_MAX = 10.0  # the schema's bound on optimizer.lr and schedule.max_lr

# lr_too_low: the loss fell by less than this share of where it started (the first epoch's loss or
# the loss at initialisation, whichever is higher: a first epoch that already learned a lot is not
# slow). lr 0.001 fell 14% in five epochs (3.106 → 2.673); lr 0.01 fell 56% (58% from its 2.85 at
# init), every healthy run far more.
LR_LOW_FALL = 0.25

# ... but it does fall: a flat curve (zero init 2.304 → 2.304, tanh_init_small 2.303 → 2.303)
# is stuck for another reason, which the other rules name.
LR_LOW_MIN_FALL = 0.01

# ... and almost linearly: the second half of the epochs falls at least this share of the first
# half's rate. A curve that is converging decelerates (lr 0.01: 0.48; deep_sigmoid 0.007); lr
# 0.001's is 0.78.
LR_LOW_LINEARITY = 0.6

# ... over at least this many optimizer steps: a handful of steps always looks linear (one
# full-batch step an epoch, as logistic_inline.json trains, is five steps in five epochs).
LR_LOW_MIN_STEPS = 50

# ... and, when update ratios were measured, they are ≪ 1e-3: the median weight's median ratio is
# under half the rule of thumb. lr 0.001: 2.0e-4 (8.6e-5, 2.0e-4, 4.1e-4 per weight); lr 0.01
# (slow but not too slow): 1.35e-3.
LR_LOW_UPDATE_RATIO = 5e-4

# --- update / weight ratio -------------------------------------------------------------------

# The rule of thumb (cs231n, the course the notes follow): each step should change a weight
# matrix by about 1e-3 of its norm.
UPDATE_RATIO_TARGET = 1e-3

# update_ratio_off (info): a weight's median ratio more than this factor from the target. Healthy
# runs' per-weight medians lie in 4.7e-4 (tanh_init_xavier) … 9.0e-3 (toy_text_lstm's LSTM); lr
# 0.5 reaches 2.0e-2 and lr 2.0 3.1e-2 in the last layer, lr 0.001 8.6e-5 in the first.
UPDATE_RATIO_BAND = 10.0

# A weight's ratio is judged on at least this many measurements after step 0: the first steps
# of a warmup are tiny by design (digits_mlp's lr starts at 0) and Adam's first are lr-sized.
UPDATE_RATIO_MIN_MEASUREMENTS = 3

# ... a warning beyond this factor: a hundredfold off is no longer a matter of taste.
# tanh_init_small's weights move 9e-7 a step, deep_sigmoid's first layers 8e-9.
UPDATE_RATIO_FAR = 100.0

# --- gradients and activations -----------------------------------------------------------------

# vanishing_gradients: the first weight's gradient norm under this share of the last weight's
# (median over the measurements of their ratio). deep_sigmoid: 2.0e-6 (1.0e-6 vs 0.49). A first
# layer with few weights (a 3×3 conv kernel, an embedding whose rows only see a batch's tokens)
# naturally gets a smaller norm, hence the room: healthy runs measured 0.16 (cnn_augment) … 1.6,
# and 0.07 at one measurement (toy_text_lstm's embedding, at its first step; 0.40 as the median).
VANISHING_RATIO = 1e-2

# ... or the activations collapse with depth: the last hidden layer's activation std under this
# share of the first's (median over the measurements). The notes (004): with small random weights
# "layer가 깊어질수록 activations가 0에 수렴" and the local gradients go to 0. tanh_init_small:
# 7.8e-6 / 0.077 ≈ 1e-4 at init, 1.9e-3 as the median; every other run 0.34 (lr 2.0, a layer
# dying) or more, deep_sigmoid 0.56, tanh_init_xavier 0.83.
COLLAPSE_RATIO = 1e-2

# exploding_gradients: the first weight's gradient norm over this multiple of the last weight's.
# tanh_init_large: median 104 (490 at init, first layer 1.3e3 vs 2.7); no healthy run's first
# layer got more than 1.6× the last's (deep_relu_kaiming, 10 ReLU layers).
EXPLODING_RATIO = 10.0

# saturated_units: a sigmoid/tanh layer with at least this share of its outputs within 2% of an
# asymptote (where the local gradient is under 8% of its peak), as the median over measurements.
# tanh_init_large: 0.77 at init, 0.90-0.97 after; tanh_init_xavier's first layer 0.041 (0.053 at
# most), deep_sigmoid 0.004.
SATURATED_SHARE = 0.5

# dead_relus: a ReLU layer with at least this share of units that output 0 for every sample of
# the measured batch, over its latest measurements. lr 2.0 killed 0.98 of its second layer; wine
# on raw features 1.00; healthy runs at most 0.19 (deep_relu_kaiming's 8th layer).
DEAD_SHARE = 0.5
DEAD_RECENT = 3  # the latest measurements a layer's dead share is the median of (live units can recover)

# A layer's outputs are one constant (units identical, zero init) when their std is under this
# share of their magnitude (or of 1, for outputs near 0): float32's resolution. Zero init gives
# exactly 0; the smallest std any other init gave is tanh_init_small's last layer, 7.8e-6.
CONSTANT_STD = 1e-6

# The first layer's activation std at initialisation above this (with no scaling preprocessing)
# means unscaled inputs: a Kaiming-initialised first layer on scaled inputs gave 0.6-0.97; wine's
# raw features (proline ~10³) gave 92.
UNSCALED_STD = 10.0

# --- initial loss --------------------------------------------------------------------------------

# init_loss_off: the loss at initialisation more than this factor from ln C (the loss of a uniform
# guess, what a well-initialised classifier starts at). tanh_init_large 24.3 = 10.6 × ln 10;
# wine_raw 3.59 = 3.3 × ln 3; Kaiming ReLU nets start a little high (kaiming_relu 1.24×,
# cnn_augment 1.40×, pca_whitening 1.41×). Under ln C / factor the model is confident and right
# before training, which a random init cannot be (a leak or a pretrained model): info.
INIT_LOSS_FACTOR = 2.0

# --- overfitting and underfitting ----------------------------------------------------------------

# overfitting: the validation loss has not improved for at least this many epochs ("several"),
# or a tenth of the run's epochs when that is more: on 105 validation points (the moons pair)
# val_loss jumps ±20% from one epoch to the next, and a 300-epoch run finds new lows long after a
# 3-epoch rise.
OVERFIT_EPOCHS = 3
OVERFIT_SCALE = 10

# Validation and training losses are smoothed over a trailing window of a tenth of the run's
# epochs (1 to 10), for the same noise.
OVERFIT_MAX_WINDOW = 10

# ... and it rose by this share of its best. overfit_plain at the end: +35% (best 0.51 smoothed at
# epoch 23, 0.69 at 300), up to +44% on the way; at any epoch once the patience has passed,
# overfit_regularized at most +2.2%, kaiming_relu +5.5%, digits_mlp +8.7% (with early stopping).
OVERFIT_RISE = 0.10

# ... or the gap between validation and training loss widened by this share of the best
# validation loss. overfit_plain: up to 0.72 (at the end the gap grew from 0.24 to 0.56); at any
# epoch, kaiming_relu 0.07, digits_mlp 0.16, toy_text_lstm 0.12, overfit_regularized 0.11, and
# wine_standardized 0.48 mid-run (epoch 13: train loss halved while val_loss stayed flat, then
# val_loss fell again).
OVERFIT_GAP_GROWTH = 0.6

# ... and the model did fit its training set: the smoothed training loss is under this share of
# ln C. A net that collapsed back to chance (lr 2.0 on one machine: val_loss 2.07 at epoch 2, 2.31
# = ln 10 three epochs later, the training loss at ln 10 too) is not memorising anything;
# overfit_plain's training loss was 0.27 ln 2 when its val_loss rose.
OVERFIT_TRAIN_FIT = 0.5

# Regularization a suggestion sets: dropout 0.5, "0.5가 일반적" (the notes, 004), and L2 ten times
# the current, at least 1e-3. overfit_plain with dropout 0.5 and L2 1e-3 trains without the verdict
# (overfit_regularized uses 0.003).
DROPOUT = 0.5
L2_FLOOR = 1e-3

# underfitting (at the end only): the final training loss is at least this share of ln C, the
# loss of knowing nothing. sgd.json after five epochs: 1.187 = 0.52 ln 10 (accuracy 0.73); healthy
# classifiers end at 0.33 ln C at most (overfit_regularized on noisy moons), pca_whitening 0.21,
# the digits MLPs 0.012 and less.
UNDERFIT_LOSS = 0.5

# ... and if its last epoch still fell by this share, it needs more epochs (sgd.json: −15%);
# otherwise it has plateaued and needs a bigger model.
STILL_FALLING = 0.02
