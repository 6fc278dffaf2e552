// face_recognition's indexing pipeline on dlib built with BLAS (Debian's libdlib-dev 19.24,
// DLIB_USE_BLAS, OpenBLAS): per image, HOG detection with one upsampling pass, the 5-point shape
// predictor, the face network on each face's 150x150 chip (padding 0.25, no jitter: what
// face_recognition.face_encodings does), and every template appended to a binary file as it is
// computed. The baseline bench/bench_indexing.py runs as N processes over slices of the images,
// against `faceledger index --workers N`; start-up (model loading) is inside its timing.
//
//   blas_dlib_index SHAPE5.dat RESNET.dat PATHS.txt OUT.bin
//   PATHS.txt: one image path a line. OUT.bin: per face, int32 image number (line in PATHS.txt),
//   then 128 float32. Prints "images faces" on exit.
#include <dlib/dnn.h>
#include <dlib/image_io.h>
#include <dlib/image_processing.h>
#include <dlib/image_processing/frontal_face_detector.h>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

using namespace dlib;

// dlib's face recognition ResNet (dlib/examples/dnn_face_recognition_ex.cpp)
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual = add_prev1<block<N, BN, 1, tag1<SUBNET>>>;
template <template <int, template <typename> class, int, typename> class block, int N,
          template <typename> class BN, typename SUBNET>
using residual_down = add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<block<N, BN, 2, tag1<SUBNET>>>>>>;
template <int N, template <typename> class BN, int stride, typename SUBNET>
using block = BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, stride, stride, SUBNET>>>>>;
template <int N, typename SUBNET> using ares = relu<residual<block, N, affine, SUBNET>>;
template <int N, typename SUBNET> using ares_down = relu<residual_down<block, N, affine, SUBNET>>;
template <typename SUBNET> using alevel0 = ares_down<256, SUBNET>;
template <typename SUBNET> using alevel1 = ares<256, ares<256, ares_down<256, SUBNET>>>;
template <typename SUBNET> using alevel2 = ares<128, ares<128, ares_down<128, SUBNET>>>;
template <typename SUBNET> using alevel3 = ares<64, ares<64, ares<64, ares_down<64, SUBNET>>>>;
template <typename SUBNET> using alevel4 = ares<32, ares<32, ares<32, SUBNET>>>;
using anet_type = loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<alevel1<alevel2<alevel3<alevel4<
    max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

int main(int argc, char** argv) {
    if (argc != 5) {
        std::cerr << "usage: blas_dlib_index SHAPE5.dat RESNET.dat PATHS.txt OUT.bin\n";
        return 2;
    }
    frontal_face_detector detector = get_frontal_face_detector();
    shape_predictor sp;
    deserialize(argv[1]) >> sp;
    anet_type net;
    deserialize(argv[2]) >> net;
    std::ifstream list(argv[3]);
    FILE* out = std::fopen(argv[4], "ab");
    if (!out) {
        std::cerr << "cannot open " << argv[4] << "\n";
        return 1;
    }
    std::string path;
    int32_t images = 0;
    long faces = 0;
    matrix<rgb_pixel> img;
    while (std::getline(list, path)) {
        if (path.empty()) continue;
        load_image(img, path);
        std::vector<rectangle> dets = detector(img, 1);  // face_recognition: number_of_times_to_upsample=1
        std::vector<matrix<rgb_pixel>> chips;
        for (auto& r : dets) {
            matrix<rgb_pixel> chip;
            extract_image_chip(img, get_face_chip_details(sp(img, r), 150, 0.25), chip);
            chips.push_back(std::move(chip));
        }
        if (!chips.empty()) {
            std::vector<matrix<float, 0, 1>> d = net(chips);
            for (auto& v : d) {
                std::fwrite(&images, sizeof images, 1, out);
                std::fwrite(&v(0), sizeof(float), 128, out);
            }
            std::fflush(out);  // stored as it is computed: a killed run keeps what it reported
            faces += d.size();
        }
        ++images;
    }
    std::fclose(out);
    std::cout << images << " " << faces << std::endl;
    return 0;
}
