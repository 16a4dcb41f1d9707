// `lenet-coord --help`: the commands. Apart from coord.ts, which runs the program when imported,
// so that docs/cli.md can be made from it (test/unit/cli/docs.test.ts).
export const COORD_USAGE = `Usage: lenet-coord <command> [options]

Commands:
  start         train LeNet-5 on MNIST (the coordinator)
  eval          test accuracy and confusion matrix of a checkpoint
  predict       classify PNG images of digits with a checkpoint

Run 'lenet-coord <command> --help' for the options of a command.
`;
