class VisionDataset:
    pass


class CIFAR10(VisionDataset):
    pass
