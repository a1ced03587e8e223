// Tests run one at a time: training is made reproducible by seeding torch's global generator per step,
// and libtorch already uses every core inside a single test.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
